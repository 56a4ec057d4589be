"""The special tokens, defined once for every part of ``ptlib``.

The vocabulary (:mod:`ptlib.data.vocab`) puts them first, in this order, so their
ids are fixed; the models (generation, the captioner) and the training loss read
the ids from here. Neither side imports the other for them.
"""

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
"""The first entries of every vocabulary, in id order."""

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
"""Their ids: each one's position in :data:`SPECIAL_TOKENS`."""
