"""ptlib.tokens: the special tokens, defined once."""

from __future__ import annotations

import re
from pathlib import Path

from ptlib import tokens
from ptlib.data.vocab import Vocabulary

PTLIB = Path(__file__).resolve().parent.parent / "ptlib"


def test_ids_are_the_positions_of_the_special_tokens():
    ids = (tokens.PAD_ID, tokens.BOS_ID, tokens.EOS_ID, tokens.UNK_ID)
    assert ids == tuple(tokens.SPECIAL_TOKENS.index(t)
                        for t in (tokens.PAD, tokens.BOS, tokens.EOS, tokens.UNK))
    vocab = Vocabulary.build(["a red circle"])
    assert [vocab.stoi[t] for t in tokens.SPECIAL_TOKENS] == list(ids)


def test_special_tokens_are_defined_in_one_module():
    definition = re.compile(r"^\s*(?:[A-Z_, ]*\b(?:PAD|BOS|EOS|UNK)_ID\b[A-Z_, ]*)=\s*\d", re.M)
    literal = re.compile(r"^\s*(?:PAD|BOS|EOS|UNK)\s*=|\"<(?:pad|bos|eos|unk)>\"", re.M)
    found = [p.relative_to(PTLIB).as_posix() for p in sorted(PTLIB.rglob("*.py"))
             if definition.search(p.read_text()) or literal.search(p.read_text())]
    assert found == ["tokens.py"]
