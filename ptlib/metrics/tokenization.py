"""Caption tokenisation for scoring: Stanford PTB (Java) or the same rule in Python.

COCO caption metrics are computed on text tokenised by the Stanford PTB
tokenizer (lower-cased, punctuation tokens removed), which pycocoevalcap runs
in a Java subprocess. When ``java`` is not on ``PATH`` the scorer falls back to
the course's one Python rule, :func:`ptlib.data.vocab.tokenize` (lower case,
punctuation stripped, split on whitespace), and says so in its result
(``"tokenizer": "python-fallback"``).

The two agree on ordinary captions. They differ on contractions and brackets:
PTB splits ``"don't"`` into ``"do n't"`` and turns ``"("`` into ``"-lrb-"``
(pycocoevalcap removes only the upper-case ``-LRB-``, so the token survives
its lower-casing); the Python rule writes ``"dont"`` and drops brackets.
"""

from __future__ import annotations

import shutil
from collections.abc import Hashable, Mapping, Sequence

from ptlib.data.vocab import tokenize as vocab_tokenize


def java_available() -> bool:
    """Whether a ``java`` executable is on ``PATH`` (PTB tokenizer, METEOR, SPICE need it)."""
    return shutil.which("java") is not None


def python_tokenize(text: str) -> list[str]:
    """Tokenise one caption with the course's one Python rule, :func:`ptlib.data.vocab.tokenize`.

    Used when Java (and so the PTB tokenizer) is missing, and for the
    most-frequent-caption floor, so evaluation counts words as training does.

    Args:
        text: One caption.

    Returns:
        The tokens, e.g. ``["a", "red", "circle"]`` for ``"A red circle."``.
    """
    return vocab_tokenize(text)


def _one_line(text: str) -> str:
    """Collapse every kind of whitespace (newlines included) to single spaces.

    The PTB tokenizer reads one caption per line; a caption holding a line
    break would shift every caption after it onto the wrong image.
    """
    return " ".join(text.split())


def tokenize_captions(
    captions: Mapping[Hashable, Sequence[str]], *, use_ptb: bool
) -> dict[Hashable, list[str]]:
    """Tokenise every caption of every image, keeping image ids and caption order.

    Args:
        captions: Image id -> its captions (already checked to be strings).
        use_ptb: Run the Stanford PTB tokenizer (needs Java) instead of
            :func:`python_tokenize`.

    Returns:
        Image id -> the tokenised captions, each a single-space-joined string
        (the form pycocoevalcap's scorers read).

    Raises:
        ptlib.errors.ExternalToolError: The PTB tokenizer failed, hung (timeout) or
            returned a different number of captions than it was given.
    """
    if not use_ptb:
        return {
            image_id: [" ".join(python_tokenize(text)) for text in texts]
            for image_id, texts in captions.items()
        }
    from ptlib.errors import ExternalToolError
    from ptlib.metrics.java import ptb_tokenize

    non_empty = {image_id: texts for image_id, texts in captions.items() if len(texts) > 0}
    request = {
        image_id: [_one_line(text) for text in texts]
        for image_id, texts in non_empty.items()
    }
    tokenized = ptb_tokenize(request) if request else {}
    for image_id, texts in non_empty.items():
        got = len(tokenized.get(image_id, []))
        if got != len(texts):
            raise ExternalToolError(
                f"the PTB tokenizer returned {got} captions for image {image_id!r} instead of "
                f"{len(texts)}; rerun with tokenizer='python' and report the captions"
            )
    return {
        image_id: [" ".join(line.split()) for line in tokenized[image_id]]
        if image_id in non_empty
        else []
        for image_id in captions
    }
