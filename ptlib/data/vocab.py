"""Tokenisation and the word vocabulary.

:func:`tokenize` is the one tokenisation rule of the course: the vocabulary,
the datasets and the caption metrics all use it, so a word counts the same way
in training and in evaluation.

Special tokens (defined in :mod:`ptlib.tokens`, shared by every part of ``ptlib``):
``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3; every vocabulary starts with them.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from ptlib.tokens import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID

VOCAB_FORMAT = "ptlib.vocab/1"


def tokenize(text: str) -> list[str]:
    """Split a caption into lower-case words without punctuation.

    The rule: Unicode NFKC normalisation, lower case, apostrophes deleted
    (``"don't"`` -> ``"dont"``, as in Karpathy's COCO preprocessing), every
    other punctuation or symbol character replaced by a space, then split on
    whitespace. Letters outside ASCII are kept (``"Café"`` -> ``"café"``).

    Args:
        text: A caption.

    Returns:
        The words; empty for an empty, whitespace-only or punctuation-only caption.

    Raises:
        TypeError: If ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize expects a str caption, got {type(text).__name__}: {text!r}")
    text = unicodedata.normalize("NFKC", text).lower()
    chars = []
    for char in text:
        if char in "'\u2019\u2018`":
            continue
        category = unicodedata.category(char)
        chars.append(" " if category[0] in "PSZC" else char)
    return "".join(chars).split()


class Vocabulary:
    """A word <-> id table with the special tokens at ids 0..3.

    Build it from training captions with :meth:`build`; ids beyond the specials
    are ordered by decreasing frequency, ties broken alphabetically, so the
    same captions always give the same table.

    Attributes:
        itos: The word of each id.
        stoi: The id of each word.
        counts: Training-set frequency of each kept word (for plots and coverage).
    """

    def __init__(self, itos: Sequence[str], counts: dict[str, int] | None = None) -> None:
        itos = list(itos)
        if tuple(itos[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(
                f"a vocabulary must start with {list(SPECIAL_TOKENS)}, got {itos[:4]}"
            )
        duplicated = sorted({w for w, n in Counter(itos).items() if n > 1})
        if duplicated:
            raise ValueError(f"vocabulary words must be unique; repeated: {duplicated[:10]}")
        self.itos: list[str] = itos
        self.stoi: dict[str, int] = {word: i for i, word in enumerate(itos)}
        self.counts: dict[str, int] = dict(counts or {})

    @classmethod
    def build(
        cls, captions: Iterable[str], min_freq: int = 5, max_size: int = 2033
    ) -> Vocabulary:
        """Build a vocabulary from captions.

        Args:
            captions: Training captions (raw text; tokenised with :func:`tokenize`).
            min_freq: Keep words seen at least this many times.
            max_size: The most ids in the table, special tokens included (the
                paper's 2033); the most frequent words are kept.

        Raises:
            ValueError: If ``min_freq < 1`` or ``max_size`` leaves no room for a word.
        """
        if isinstance(min_freq, bool) or not isinstance(min_freq, int) or min_freq < 1:
            raise ValueError(f"min_freq must be an integer >= 1, got {min_freq!r}")
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size <= len(
            SPECIAL_TOKENS
        ):
            raise ValueError(
                f"max_size must be an integer > {len(SPECIAL_TOKENS)} (it counts the special "
                f"tokens), got {max_size!r}"
            )
        if isinstance(captions, str):
            raise TypeError("captions must be an iterable of strings, not one string")
        counter: Counter[str] = Counter()
        for caption in captions:
            counter.update(tokenize(caption))
        for special in SPECIAL_TOKENS:
            counter.pop(special, None)
        kept = sorted(
            (w for w, n in counter.items() if n >= min_freq), key=lambda w: (-counter[w], w)
        )
        kept = kept[: max_size - len(SPECIAL_TOKENS)]
        return cls(list(SPECIAL_TOKENS) + kept, {w: counter[w] for w in kept})

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, word: object) -> bool:
        return word in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} ids: {', '.join(self.itos[4:12])}, ...)"

    def encode(
        self, caption: str | Sequence[str], max_len: int | None = None, add_specials: bool = True
    ) -> list[int]:
        """Turn a caption into ids: ``<bos> w1 ... wn <eos>``; unknown words become ``<unk>``.

        Args:
            caption: Raw text (tokenised with :func:`tokenize`) or a list of words.
            max_len: Truncate to at most this many ids, ``<bos>``/``<eos>``
                included (the ``<eos>`` is kept, words are dropped from the end).
            add_specials: Add ``<bos>`` and ``<eos>``.

        Raises:
            ValueError: If ``max_len`` is too small to hold ``<bos>``, a word and ``<eos>``.
        """
        words = tokenize(caption) if isinstance(caption, str) else list(caption)
        ids = [self.stoi.get(w, UNK_ID) for w in words]
        extra = 2 if add_specials else 0
        if max_len is not None:
            if max_len < extra + 1:
                raise ValueError(f"max_len must be at least {extra + 1}, got {max_len}")
            ids = ids[: max_len - extra]
        return [BOS_ID, *ids, EOS_ID] if add_specials else ids

    def decode(self, ids: Iterable[int], stop_at_eos: bool = True) -> str:
        """Turn ids back into a caption; special tokens are dropped except ``<unk>``.

        Args:
            ids: Token ids (a list or a 1-D tensor).
            stop_at_eos: Ignore everything after the first ``<eos>``.
        """
        words = []
        for token in ids:
            token = int(token)
            if token == EOS_ID and stop_at_eos:
                break
            if token in (PAD_ID, BOS_ID, EOS_ID):
                continue
            if not 0 <= token < len(self.itos):
                raise ValueError(f"id {token} is outside the vocabulary (0..{len(self) - 1})")
            words.append(self.itos[token])
        return " ".join(words)

    def coverage(self, captions: Iterable[str]) -> float:
        """The fraction of word occurrences in ``captions`` that the vocabulary knows."""
        total = known = 0
        for caption in captions:
            for word in tokenize(caption):
                total += 1
                known += word in self.stoi
        return known / total if total else 1.0

    def to_json(self) -> dict:
        """A JSON-ready dict (what :meth:`save` writes)."""
        return {"format": VOCAB_FORMAT, "itos": self.itos, "counts": self.counts}

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON (atomically)."""
        from ptlib.files import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_json(), ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`.

        Raises:
            FileNotFoundError: If the file does not exist.
            ValueError: If it is not a ptlib vocabulary (the message names the file).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file {path} does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from err
        if not isinstance(data, dict) or data.get("format") != VOCAB_FORMAT:
            raise ValueError(f"{path} is not a ptlib vocabulary (expected format {VOCAB_FORMAT!r})")
        itos = data.get("itos")
        if not isinstance(itos, list) or not all(isinstance(w, str) for w in itos):
            raise ValueError(f"{path}: key 'itos' must be a list of strings")
        try:
            return cls(itos, data.get("counts") or {})
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
