"""The built book as a reader sees it: every page in headless Chromium at 1280x800, offline.

Usage (from the repository root, after building the book):

    python scripts/check_book.py _build/ci        # make book-ci's build; what make test runs
    python scripts/check_book.py _build/html      # make book (cpu profile)
    python scripts/check_book.py _build/ci 07 08  # only pages whose name starts so
    python scripts/check_book.py _build/ci book/  # only the pages under book/
    make book-check                               # builds the ci book first

Each page is opened with no network (a dead proxy: anything loaded from the internet fails,
as on a laptop offline), toggles and collapsed cells are opened, and the page fails on:

  overflow  a code, output, table or formula block wider than the column (hidden behind
            horizontal scrolling or sticking out of it), or a column whose code blocks hold
            fewer characters than the limit
  wide      a text output line over scripts/check_widths.py's LIMIT characters (from the
            build's executed notebooks), even where the browser happens to fit it
  image     an image that does not load
  error     a visible traceback, error or warning output, or a Sphinx error message
  tex       raw TeX left in the text (MathJax did not typeset it)
  link      an internal link whose file or #anchor does not exist

Resources the page requests from the internet are listed as notes (they do not fail it).
The exit status is 1 when any page fails. Needs Debian's ``chromium`` and
``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``; override with
$CHROMIUM and $CHROMEDRIVER) and the ``selenium`` package; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

CATEGORIES = ("overflow", "wide", "image", "error", "tex", "link")
SKIPPED_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
WINDOW = (1280, 800)

_spec = importlib.util.spec_from_file_location(
    "check_widths", Path(__file__).resolve().parent / "check_widths.py"
)
check_widths = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("check_widths", check_widths)
_spec.loader.exec_module(check_widths)

# Runs in the page; calls back with a dict of findings. Opens every toggle first, waits
# for MathJax and the images, then measures.
PAGE_SCRIPT = r"""
const done = arguments[arguments.length - 1];
(async () => {
  document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  document.querySelectorAll('button.toggle-button').forEach(b => {
    if (b.classList.contains('toggle-button-hidden')) b.click();
  });
  document.querySelectorAll('img[loading="lazy"]').forEach(i => { i.loading = 'eager'; });
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) {
    try { await mj.startup.promise; } catch (e) { /* reported as raw TeX below */ }
  }
  await Promise.all(Array.from(document.images).map(img => img.complete ? null :
    new Promise(r => { img.addEventListener('load', r); img.addEventListener('error', r);
                       setTimeout(r, 5000); })));
  await new Promise(r => setTimeout(r, 100));

  const article = document.querySelector('article.bd-article') ||
                  document.querySelector('main') || document.body;
  const cells = Array.from(article.querySelectorAll('div.cell'));
  const headings = Array.from(article.querySelectorAll('h1, h2, h3'));
  const clip = (s, n) => { s = (s || '').replace(/\s+/g, ' ').trim();
                            return s.length > n ? s.slice(0, n) + '…' : s; };
  function where(el) {
    const cell = el.closest('div.cell');
    let part = el.closest('.cell_output') ? 'output' : el.closest('.cell_input') ? 'code' : '';
    let label = cell ? `cell ${cells.indexOf(cell) + 1} ${part}`.trim() : '';
    if (!cell) {
      let h = null;
      for (const x of headings) {
        if (x.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING) h = x;
      }
      label = h ? `section "${clip(h.textContent.replace('#', ''), 40)}"` : 'top';
    }
    return label;
  }
  // Width of one monospace character in a code block, for "~N chars" in the report.
  const probe = document.createElement('pre');
  probe.style.cssText = 'position:absolute;visibility:hidden;white-space:pre;padding:0;border:0';
  probe.textContent = 'x'.repeat(100);
  (article.querySelector('div.highlight') || article).appendChild(probe);
  const charPx = probe.getBoundingClientRect().width / 100;
  probe.remove();

  const style = getComputedStyle(article);
  const box = article.getBoundingClientRect();
  const colLeft = box.left + parseFloat(style.paddingLeft);
  const colRight = box.right - parseFloat(style.paddingRight);
  const samplePre = article.querySelector('div.highlight pre');
  const codeCols = samplePre ? Math.floor((samplePre.clientWidth -
      parseFloat(getComputedStyle(samplePre).paddingLeft) -
      parseFloat(getComputedStyle(samplePre).paddingRight)) / charPx) : null;

  const overflow = [];
  const reported = new Set();
  const longestLine = el => (el.innerText || '').split('\n')
      .reduce((a, b) => (b.length > a.length ? b : a), '');
  for (const el of article.querySelectorAll('*')) {
    if (!el.getClientRects().length) continue;             // not displayed
    let parent = el.parentElement, nested = false;
    for (; parent && parent !== article; parent = parent.parentElement) {
      if (reported.has(parent)) { nested = true; break; }
    }
    if (nested) continue;
    const cs = getComputedStyle(el);
    const scroller = ['auto', 'scroll', 'hidden'].includes(cs.overflowX) || el.tagName === 'PRE';
    const rect = el.getBoundingClientRect();
    let how = null;
    // A few px (an italic glyph in inline math) hide less than a character: not counted.
    if (scroller && el.scrollWidth > el.clientWidth + 4 && el.clientWidth > 0) {
      how = `${el.scrollWidth}px of content in a ${el.clientWidth}px box (scrolls)`;
    } else if (rect.width > 0 && rect.right > colRight + 4) {
      how = `ends ${Math.round(rect.right - colRight)}px right of the column`;
    }
    if (!how) continue;
    reported.add(el);
    const line = longestLine(el);
    const tag = el.tagName.toLowerCase() + (el.className && typeof el.className === 'string' ?
        '.' + el.className.trim().split(/\s+/).slice(0, 2).join('.') : '');
    overflow.push(`${where(el)} <${tag}>: ${how}; longest line ${line.length} chars: ` +
                  `"${clip(line, 60)}"`);
  }

  const images = [];
  for (const img of document.images) {
    if (!img.complete || img.naturalWidth === 0) {
      images.push(`${where(img)}: ${clip(img.getAttribute('src'), 100)} does not load`);
    }
  }

  const errors = [];
  const errorWords = /Traceback|Error\b|Exception\b|Warning\b|warn\(/;
  for (const el of article.querySelectorAll(
      '.output.traceback, .output.error, .output.stderr, .stderr, .system-message, ' +
      '.problematic, .cell_output pre, .cell_output .output')) {
    if (!el.getClientRects().length) continue;
    const text = el.innerText || '';
    const alwaysBad = el.matches('.traceback, .output.error, .system-message, .problematic');
    if (alwaysBad || (el.matches('.stderr, .output.stderr') && errorWords.test(text)) ||
        /Traceback \(most recent call last\)/.test(text)) {
      if (errors.some(e => e.el.contains(el) || el.contains(e.el))) continue;
      errors.push({el, msg: `${where(el)}: ${clip(text, 160)}`});
    }
  }

  const tex = [];
  const texPattern = /\\\(|\\\[|\\begin\{|\$\$|\\(frac|max|min|sum|prod|mathrm|mathbf|mathcal|text|bigl|bigr|left|right|cdot|times|approx|leq|geq|le|ge|alpha|beta|ell|lfloor|rfloor|lceil|rceil)\b/;
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      const p = node.parentElement;
      if (!p || p.closest('pre, code, script, style, textarea, mjx-container, .highlight, ' +
                          '.MathJax, mjx-assistive-mml')) return NodeFilter.FILTER_REJECT;
      return NodeFilter.FILTER_ACCEPT;
    }});
  const texSeen = new Set();
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!texPattern.test(n.nodeValue) || !n.parentElement.getClientRects().length) continue;
    const host = n.parentElement.closest('.math, p, li, td, div') || n.parentElement;
    if (texSeen.has(host)) continue;
    texSeen.add(host);
    tex.push(`${where(host)}: ${clip(host.textContent, 100)}`);
  }

  const links = Array.from(document.querySelectorAll('a[href]'))
      .map(a => [a.getAttribute('href'), a.href, where(a)]);
  const network = [];
  for (const el of document.querySelectorAll('script[src], link[href], img[src], iframe[src]')) {
    if (el.tagName === 'LINK' && !/stylesheet|preload|icon/.test(el.rel)) continue;
    const url = el.src || el.href;
    if (/^https?:/.test(url)) network.push(url);
  }
  done({overflow, images, errors: errors.map(e => e.msg), tex, links, network,
        innerWidth: window.innerWidth, columnPx: Math.round(colRight - colLeft),
        codeCols, charPx});
})().catch(err => done({fatal: String(err && err.stack || err)}));
"""


class _Anchors(HTMLParser):
    """Collects the ids and names a page can be linked to."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key == "id" or (tag == "a" and key == "name"):
                self.anchors.add(value or "")


class LinkChecker:
    """Resolves internal links (file and #anchor) inside a built book.

    Args:
        root: The build's html directory; links may point anywhere below it.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._anchors: dict[Path, set[str]] = {}

    def anchors(self, path: Path) -> set[str]:
        if path not in self._anchors:
            parser = _Anchors()
            parser.feed(path.read_text(encoding="utf-8", errors="replace"))
            self._anchors[path] = parser.anchors
        return self._anchors[path]

    def problem(self, raw: str, resolved: str) -> str | None:
        """Why a link does not resolve, or None when it does (or is external).

        Args:
            raw: The href as written in the page.
            resolved: The absolute URL the browser resolved it to.
        """
        url = urlparse(resolved)
        if url.scheme != "file":
            return None
        path = Path(unquote(url.path))
        if path.is_dir():
            path = path / "index.html"
        if not path.exists():
            return f'"{raw}": no file {_rel(path, self.root)}'
        fragment = unquote(url.fragment)
        if fragment and path.suffix == ".html" and fragment not in self.anchors(path):
            return f'"{raw}": no anchor #{fragment} in {_rel(path, self.root)}'
        return None


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def book_pages(html: Path, prefixes: list[str]) -> list[Path]:
    """The reader's pages of a built book (no generated index, search or source pages).

    Args:
        html: The build's html directory.
        prefixes: Keep only pages whose file name or path starts with one of these (all if
            empty), e.g. ``07`` or ``book/``.
    """
    pages = []
    for page in sorted(html.rglob("*.html")):
        rel = page.relative_to(html)
        if any(part.startswith("_") for part in rel.parts) or page.name in SKIPPED_PAGES:
            continue
        head = page.read_text(encoding="utf-8", errors="replace")[:2000].lower()
        if 'http-equiv="refresh"' in head:  # the root index.html only redirects
            continue
        if prefixes and not any(page.name.startswith(p) or rel.as_posix().startswith(p)
                                for p in prefixes):
            continue
        pages.append(page)
    return pages


def wide_output_by_page(html: Path, limit: int) -> dict[Path, list[str]]:
    """Text output lines over ``limit`` characters, keyed by the page that shows them."""
    found: dict[Path, list[str]] = {}
    try:
        notebooks = check_widths.executed_notebooks(html)
    except SystemExit as err:
        print(f"note: {err}")
        return found
    execute_dir = next(p for p in notebooks[0].parents if p.name == "jupyter_execute")
    for notebook in notebooks:
        page = (html / notebook.relative_to(execute_dir)).with_suffix(".html")
        for line in check_widths.wide_output_lines(notebook, limit):
            text = line.text if len(line.text) <= 70 else line.text[:70] + "…"
            found.setdefault(page.resolve(), []).append(
                f"cell {line.shown} output (notebook cell {line.cell}): {line.width} chars: "
                f"\"{text}\""
            )
    return found


def make_driver():
    """Headless Chromium at 1280x800 with the network cut off (selenium, local driver)."""
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    browser = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    driver_path = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
    for path, package in ((browser, "chromium"), (driver_path, "chromium-driver")):
        if not Path(path).exists():
            raise SystemExit(f"{path} not found: install it (apt-get install -y {package})")
    options = Options()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--proxy-server=http://127.0.0.1:9",  # offline: every http(s) request fails
        "--proxy-bypass-list=<-loopback>",
        "--allow-file-access-from-files",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(120)
    driver.set_script_timeout(60)
    return driver


def check_pages(html: Path, pages: list[Path], limit: int) -> dict[str, dict[str, list[str]]]:
    """Opens each page and collects its problems per category (plus "notes")."""
    links = LinkChecker(html)
    wide = wide_output_by_page(html, limit)
    results: dict[str, dict[str, list[str]]] = {}
    driver = make_driver()
    try:
        for page in pages:
            name = str(page.relative_to(html))
            driver.get(page.resolve().as_uri())
            found = driver.execute_async_script(PAGE_SCRIPT)
            if "fatal" in found:
                results[name] = {"error": [f"the page check failed: {found['fatal']}"]}
                continue
            problems = {
                "overflow": found["overflow"],
                "wide": wide.get(page.resolve(), []),
                "image": found["images"],
                "error": found["errors"],
                "tex": found["tex"],
                "link": [],
                "notes": [f"loads from the internet: {url}" for url in found["network"]],
            }
            seen = set()
            for raw, resolved, where in found["links"]:
                why = links.problem(raw, resolved)
                if why and why not in seen:
                    seen.add(why)
                    problems["link"].append(f"{where}: {why}")
            cols = found["codeCols"]
            if cols is not None and cols < limit:
                problems["overflow"].insert(0, (
                    f"a code block holds {cols} characters, fewer than the {limit} a line may "
                    "have: widen the column (_static/book-width.css)"))
            problems["info"] = [
                f"viewport {found['innerWidth']}px, column {found['columnPx']}px"
                + (f", a code block holds {cols} characters" if cols else "")
            ]
            results[name] = problems
    finally:
        driver.quit()
    return results


def report(results: dict[str, dict[str, list[str]]]) -> int:
    """Prints the per-page report and a summary table; returns the number of problems."""
    total = 0
    counts: dict[str, Counter] = {}
    for name, problems in results.items():
        count = Counter({c: len(problems.get(c, [])) for c in CATEGORIES})
        counts[name] = count
        n = sum(count.values())
        total += n
        info = "; ".join(problems.get("info", []))
        print(f"\n== {name}: {'OK' if n == 0 else f'{n} problems'} ({info})")
        for category in CATEGORIES:
            for message in problems.get(category, []):
                print(f"  {category:<8} {message}")
        for message in sorted(set(problems.get("notes", []))):
            print(f"  note     {message}")
    width = max((len(n) for n in results), default=4)
    print("\n" + "page".ljust(width) + "".join(f"{c:>9}" for c in CATEGORIES))
    for name, count in counts.items():
        print(name.ljust(width) + "".join(f"{count[c]:>9}" for c in CATEGORIES))
    verdict = "passed" if total == 0 else f"FAILED: {total} problems"
    print(f"check_book: {len(results)} pages, {verdict}")
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", type=Path, help="built book: _build/ci (its _build/html) or _build/html")
    parser.add_argument("pages", nargs="*", help="page name prefixes, e.g. 07 08 (default all)")
    parser.add_argument("--limit", type=int, default=check_widths.LIMIT,
                        help=f"characters per text output line (default {check_widths.LIMIT})")
    args = parser.parse_args(argv)
    html = next((d for d in (args.html, args.html / "html", args.html / "_build" / "html")
                 if (d / "index.html").exists()), args.html)
    if not (html / "index.html").exists():
        parser.error(f"{args.html}: no built book here (no index.html); run make book-ci")
    pages = book_pages(html, args.pages)
    if not pages:
        parser.error(f"{html}: no pages match {args.pages}")
    return 1 if report(check_pages(html, pages, args.limit)) else 0


if __name__ == "__main__":
    sys.exit(main())
