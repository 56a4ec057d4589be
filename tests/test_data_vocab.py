"""Tokenisation and the vocabulary."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptlib.data.vocab import Vocabulary, tokenize
from ptlib.tokens import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID

CAPTIONS = [
    "A red circle.",
    "Two red circles!",
    "a red circle, left of a blue square",
    "a blue square",
    "the blue SQUARE; above a red circle",
]


def test_tokenize_lowercases_and_strips_punctuation():
    assert tokenize("A Small, RED circle.") == ["a", "small", "red", "circle"]
    assert tokenize("  don't  stop\t(now)\n") == ["dont", "stop", "now"]
    assert tokenize("man-made; 'quoted'") == ["man", "made", "quoted"]
    assert tokenize("Café NAÏVE ｆｕｌｌwidth") == ["café", "naïve", "fullwidth"]
    assert tokenize("") == [] and tokenize(" \t\n ") == [] and tokenize("...!?") == []
    with pytest.raises(TypeError, match="str"):
        tokenize(None)  # type: ignore[arg-type]


@given(st.text(max_size=60))
@settings(max_examples=200, deadline=None)
def test_tokenize_is_idempotent_and_clean(text):
    tokens = tokenize(text)
    assert tokenize(" ".join(tokens)) == tokens
    assert all(t and t == t.lower() and not any(c.isspace() for c in t) for t in tokens)


def test_build_orders_by_frequency_then_alphabet_with_specials_first():
    vocab = Vocabulary.build(CAPTIONS, min_freq=1)
    assert vocab.itos[:4] == list(SPECIAL_TOKENS)
    assert (vocab.stoi["<pad>"], vocab.stoi["<bos>"], vocab.stoi["<eos>"], vocab.stoi["<unk>"]) == (
        PAD_ID, BOS_ID, EOS_ID, UNK_ID)
    words = vocab.itos[4:]
    counts = [vocab.counts[w] for w in words]
    assert counts == sorted(counts, reverse=True)
    assert words[:2] == ["a", "red"]  # a: 5, red: 4, then circle: 3 ...
    assert Vocabulary.build(list(reversed(CAPTIONS)), min_freq=1) == vocab  # order-independent


def test_build_applies_min_freq_and_max_size():
    vocab = Vocabulary.build(CAPTIONS, min_freq=3)
    assert set(vocab.itos[4:]) == {"a", "red", "circle", "blue", "square"}
    capped = Vocabulary.build(CAPTIONS, min_freq=1, max_size=6)
    assert len(capped) == 6 and capped.itos[4:] == ["a", "red"]
    with pytest.raises(ValueError, match="min_freq"):
        Vocabulary.build(CAPTIONS, min_freq=0)
    with pytest.raises(ValueError, match="max_size"):
        Vocabulary.build(CAPTIONS, max_size=4)
    with pytest.raises(TypeError, match="iterable"):
        Vocabulary.build("a red circle")


def test_encode_decode_unknown_words_and_truncation():
    vocab = Vocabulary.build(CAPTIONS, min_freq=1)
    ids = vocab.encode("A red circle!")
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID and len(ids) == 5
    assert vocab.decode(ids) == "a red circle"
    unknown = vocab.encode("a purple hexagon, très grand")
    assert unknown.count(UNK_ID) == 4
    assert vocab.decode(unknown) == "a <unk> <unk> <unk> <unk>"
    truncated = vocab.encode("a red circle left of a blue square", max_len=5)
    assert truncated == [BOS_ID, *vocab.encode("a red circle", add_specials=False), EOS_ID]
    assert vocab.decode([BOS_ID, vocab.stoi["red"], EOS_ID, vocab.stoi["blue"]]) == "red"
    assert vocab.decode([vocab.stoi["red"], PAD_ID, PAD_ID]) == "red"
    with pytest.raises(ValueError, match="max_len"):
        vocab.encode("a red circle", max_len=2)
    with pytest.raises(ValueError, match="outside"):
        vocab.decode([len(vocab)])
    assert vocab.encode("") == [BOS_ID, EOS_ID]


def test_coverage_counts_known_word_occurrences():
    vocab = Vocabulary.build(CAPTIONS, min_freq=3)
    assert vocab.coverage(["a red circle", "a red dog"]) == pytest.approx(5 / 6)
    assert vocab.coverage([]) == 1.0


def test_save_load_round_trip_and_clear_errors(tmp_path):
    vocab = Vocabulary.build(CAPTIONS + ["un café rouge"], min_freq=1)
    path = tmp_path / "vocab.json"
    vocab.save(path)
    loaded = Vocabulary.load(path)
    assert loaded == vocab and loaded.counts == vocab.counts and "café" in loaded
    with pytest.raises(FileNotFoundError, match="missing.json"):
        Vocabulary.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        Vocabulary.load(bad)
    bad.write_text(json.dumps({"format": "ptlib.vocab/1", "itos": ["a", "b"]}))
    with pytest.raises(ValueError, match=r"bad.json.*<pad>"):
        Vocabulary.load(bad)
    bad.write_text(json.dumps({"format": "ptlib.vocab/1", "itos": [*SPECIAL_TOKENS, "a", "a"]}))
    with pytest.raises(ValueError, match="repeated"):
        Vocabulary.load(bad)
    bad.write_text(json.dumps({"itos": list(SPECIAL_TOKENS)}))
    with pytest.raises(ValueError, match="not a ptlib vocabulary"):
        Vocabulary.load(bad)


@given(st.lists(st.sampled_from(["a", "red", "blue", "circle", "square", "zebra"]), max_size=12))
def test_decode_inverts_encode_for_known_words(words):
    vocab = Vocabulary.build(CAPTIONS, min_freq=1)
    expected = " ".join(w if w in vocab else "<unk>" for w in words)
    assert vocab.decode(vocab.encode(" ".join(words))) == expected
