"""The Java helpers behind the caption metrics, run so that they can never hang a run.

pycocoevalcap starts METEOR 1.5 and the Stanford PTB tokenizer as Java
subprocesses and reads their output without a timeout; a process that fails to
start or stops answering blocks forever (and its ``Meteor`` object keeps a lock
held on failure, so closing it deadlocks). This module runs the same jars with:

* a timeout on every answer (``PTLIB_JAVA_TIMEOUT`` seconds, default 300), after
  which the process is killed and :class:`ptlib.errors.ExternalToolError` says
  which tool stopped and what its stderr said;
* METEOR's paraphrase table passed as an explicit path (``-a``): METEOR otherwise
  finds it from its jar's URL, which it quotes twice, so from a folder whose
  path holds a space it looks for ``with%2520space/...`` and fails;
* the PTB tokenizer's input written to the system's temporary folder, not into
  pycocoevalcap's package folder (which may be read-only).

The protocol and the post-processing are pycocoevalcap's, so scores are identical.
"""

from __future__ import annotations

import collections
import os
import queue
import subprocess
import tempfile
import threading
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

from ptlib.errors import ExternalToolError

DEFAULT_TIMEOUT_S: float = 300.0
"""Seconds to wait for one answer of a Java helper (METEOR loads a 60 MB table first)."""


def java_timeout() -> float:
    """The timeout for one answer of a Java helper: ``PTLIB_JAVA_TIMEOUT`` or the default.

    Raises:
        ValueError: If ``PTLIB_JAVA_TIMEOUT`` is not a positive number.
    """
    raw = os.environ.get("PTLIB_JAVA_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"PTLIB_JAVA_TIMEOUT={raw!r}: must be a positive number of seconds")
    return value


def meteor_dir() -> Path:
    """pycocoevalcap's METEOR folder (``meteor-1.5.jar`` and ``data/paraphrase-en.gz``)."""
    import pycocoevalcap.meteor.meteor as module

    return Path(module.__file__).parent


def tokenizer_dir() -> Path:
    """pycocoevalcap's tokenizer folder (``stanford-corenlp-3.4.1.jar``)."""
    import pycocoevalcap.tokenizer.ptbtokenizer as module

    return Path(module.__file__).parent


class MeteorProcess:
    """One METEOR 1.5 Java process (``-l en -norm``), answering over stdin/stdout.

    Args:
        folder: Holds ``meteor-1.5.jar`` and ``data/paraphrase-en.gz`` (default:
            pycocoevalcap's).
        timeout: Seconds to wait for each answer (default :func:`java_timeout`).

    Raises:
        ExternalToolError: If the files are missing or Java cannot be started.
    """

    def __init__(self, folder: str | Path | None = None, timeout: float | None = None) -> None:
        self.folder = Path(folder) if folder is not None else meteor_dir()
        self.timeout = java_timeout() if timeout is None else float(timeout)
        jar, table = self.folder / "meteor-1.5.jar", self.folder / "data" / "paraphrase-en.gz"
        for needed in (jar, table):
            if not needed.is_file():
                raise ExternalToolError(f"METEOR: {needed} is missing (reinstall pycocoevalcap)")
        command = ["java", "-jar", "-Xmx2G", str(jar.resolve()), "-", "-", "-stdio",
                   "-l", "en", "-norm", "-a", str(table.resolve())]
        try:
            self.process = subprocess.Popen(
                command, cwd=str(self.folder), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as err:
            raise ExternalToolError(f"METEOR: cannot start java ({err.strerror or err})") from err
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._threads = [threading.Thread(target=self._pump_stdout, daemon=True),
                         threading.Thread(target=self._pump_stderr, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _pump_stdout(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._lines.put(raw.decode(errors="replace").strip())
        self._lines.put(None)  # end of output: the process stopped

    def _pump_stderr(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            self._stderr.append(raw.decode(errors="replace").rstrip())

    def stderr_tail(self) -> str:
        """The informative end of the process's stderr, on one line."""
        lines = [line.strip() for line in self._stderr if line.strip()]
        causes = [line for line in lines if not line.startswith("at ")]
        return " | ".join(causes[-3:])[-600:]

    def _fail(self, what: str) -> ExternalToolError:
        process = self.process
        if process is not None and process.poll() is not None:
            what = f"exited (status {process.returncode}) before answering"
        self.close()
        for thread in self._threads:  # the process is gone: its pipes end soon
            thread.join(timeout=5)
        tail = self.stderr_tail()
        said = f"; java said: {tail}" if tail else ""
        return ExternalToolError(
            f"METEOR (Java) {what}{said}. Check that java runs and can use 2 GB of heap, set "
            "PTLIB_JAVA_TIMEOUT for a slow machine, or leave METEOR out of metrics"
        )

    def _send(self, line: str) -> None:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(f"{line}\n".encode())
            self.process.stdin.flush()
        except (OSError, ValueError, AssertionError) as err:
            if self.process is not None:
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            raise self._fail(f"stopped accepting input ({err})") from err

    def _answer(self) -> str:
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            raise self._fail(f"gave no answer within {self.timeout:g} s") from None
        if line is None:
            if self.process is not None:
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            raise self._fail("stopped answering")
        return line

    def compute_score(
        self, gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, Sequence[str]]
    ) -> tuple[float, list[float]]:
        """pycocoevalcap's ``Meteor.compute_score``: corpus score and one score per image.

        Args:
            gts: Image id -> tokenised references (no ``|`` characters).
            res: Image id -> ``[tokenised caption]`` (the same ids).
        """
        ids = list(gts)
        stats = []
        for image_id in ids:
            hypothesis = res[image_id][0].replace("|||", "").replace("  ", " ")
            self._send(" ||| ".join(("SCORE", " ||| ".join(gts[image_id]), hypothesis)))
            stats.append(self._answer())
        self._send("EVAL ||| " + " ||| ".join(stats))
        try:
            scores = [float(self._answer()) for _ in ids]
            return float(self._answer()), scores
        except ValueError as err:
            raise self._fail(f"answered something that is not a score ({err})") from err

    def close(self) -> None:
        """Stop the process (never blocks for long). Safe to call twice."""
        process = getattr(self, "process", None)
        if process is None:
            return
        self.process = None  # type: ignore[assignment]
        try:
            if process.stdin is not None:
                process.stdin.close()
        except OSError:
            pass
        if process.poll() is None:
            process.kill()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL
            pass


def ptb_tokenize(captions: Mapping[Hashable, Sequence[str]],
                 timeout: float | None = None) -> dict[Hashable, list[str]]:
    """pycocoevalcap's ``PTBTokenizer().tokenize`` with a timeout and a safe temporary file.

    Args:
        captions: Image id -> captions (one line each).
        timeout: Seconds (default :func:`java_timeout`).

    Returns:
        Image id -> tokenised captions (punctuation tokens removed), as pycocoevalcap.

    Raises:
        ExternalToolError: Java failed, hung, or the jar is missing.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS, STANFORD_CORENLP_3_4_1_JAR

    timeout = java_timeout() if timeout is None else timeout
    jar = tokenizer_dir() / STANFORD_CORENLP_3_4_1_JAR
    if not jar.is_file():
        raise ExternalToolError(f"PTB tokenizer: {jar} is missing (reinstall pycocoevalcap)")
    image_ids = [k for k, texts in captions.items() for _ in range(len(texts))]
    sentences = "\n".join(text.replace("\n", " ") for texts in captions.values()
                          for text in texts)
    with tempfile.TemporaryDirectory(prefix="ptlib-ptb-") as folder:
        source = Path(folder) / "captions.txt"
        source.write_bytes(sentences.encode())
        command = ["java", "-cp", str(jar.resolve()), "edu.stanford.nlp.process.PTBTokenizer",
                   "-preserveLines", "-lowerCase", str(source)]
        try:
            done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ExternalToolError(
                f"the PTB tokenizer (Java) gave no answer within {timeout:g} s; set "
                "PTLIB_JAVA_TIMEOUT for a slow machine or score with tokenizer='python'"
            ) from None
        except OSError as err:
            raise ExternalToolError(
                f"the PTB tokenizer cannot start java ({err.strerror or err})") from err
    if done.returncode != 0:
        tail = " | ".join(line for line in done.stderr.decode(errors="replace").splitlines()
                          if line.strip() and not line.strip().startswith("at "))[-600:]
        raise ExternalToolError(
            f"the PTB tokenizer (Java) failed with status {done.returncode}: {tail}; score with "
            "tokenizer='python' to go without it"
        )
    lines = done.stdout.decode().split("\n")
    tokenized: dict[Hashable, list[str]] = {}
    for image_id, line in zip(image_ids, lines, strict=False):
        words = [w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS]
        tokenized.setdefault(image_id, []).append(" ".join(words))
    return tokenized
