"""The one captioning loop: batches, order, decoding, kept tokens and attention on request."""

from __future__ import annotations

import pytest
import torch

from ptlib.data.datasets import CaptionItem, SkippedItem
from ptlib.data.vocab import Vocabulary
from ptlib.metrics.captions import CaptionScorer
from ptlib.metrics.correctness import SceneTruth, TrueObject
from ptlib.metrics.grounding import generated_words
from ptlib.metrics.kept_objects import cell_object_area, kept_object_recall
from ptlib.models import Captioner, num_kept, reprune
from ptlib.train.captioning import caption_images, caption_split
from ptlib.train.evaluate import caption_dataset

WORDS = ["a", "small", "large", "red", "blue", "circle", "square"]
VOCAB = Vocabulary(["<pad>", "<bos>", "<eos>", "<unk>", *WORDS])
GRID_TOKENS = 16  # 64 px images, 16 px patches


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny matrices: more threads only contend with other jobs on the machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> Captioner:
    """An untrained ViT captioner: random weights give varied captions."""
    torch.manual_seed(0)
    return Captioner.from_config(dict(
        encoder="vit_tiny_patch16_224", img_size=64, d_model=16, n_encoder_layers=0,
        n_decoder_layers=1, n_heads=2, ff_dim=32, max_len=6, vocab_size=len(VOCAB),
        prune_ratio=0.0, prune_method="none",
    )).eval()


def _items(n: int = 7) -> list[CaptionItem]:
    generator = torch.Generator().manual_seed(1)
    return [CaptionItem(torch.randn(3, 64, 64, generator=generator), None, 100 + i,
                        (f"a red circle {i}", "a blue square"))
            for i in range(n)]


def test_batches_come_in_order_and_match_a_direct_generate(model):
    items = _items()
    batches = list(caption_split(model, items, VOCAB, batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [i for b in batches for i in b.image_ids] == [100 + i for i in range(7)]
    assert batches[0].references[1] == ("a red circle 1", "a blue square")
    for start, batch in zip((0, 3, 6), batches, strict=True):
        images = torch.stack([item.image for item in items[start:start + 3]])
        direct = model.generate(images)
        assert torch.equal(batch.tokens, direct.tokens)
        assert batch.captions == [VOCAB.decode(ids) for ids in direct.tokens.tolist()]
        assert batch.words == generated_words(direct.tokens, VOCAB.itos)
        assert batch.kept_indices.tolist() == [list(range(GRID_TOKENS))] * len(batch)
        assert batch.attention is None
    assert len({c for b in batches for c in b.captions}) > 1  # not one caption for all


def test_attention_and_kept_tokens_of_a_pruned_captioner(model):
    pruned = reprune(model, 0.5, "norm")
    batches = list(caption_split(pruned, _items(), VOCAB, batch_size=4, need_attention=True))
    keep = num_kept(GRID_TOKENS, 0.5)
    for batch in batches:
        assert batch.kept_indices.shape == (len(batch), keep)
        assert batch.attention.shape == (len(batch), batch.tokens.shape[1], keep)
        assert batch.attention.device.type == "cpu"
        sums = batch.attention.sum(dim=-1)
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    assert len({tuple(row) for b in batches for row in b.kept_indices.tolist()}) > 1


def test_max_images_beam_and_skipped_items(model):
    items = _items(5)
    mixed = [items[0], SkippedItem("bad.png", "truncated"), *items[1:]]
    ids = [i for b in caption_split(model, mixed, VOCAB, batch_size=2, max_images=4) for i in
           b.image_ids]
    assert ids == [100, 101, 102]  # the first 4 entries, the bad one left out
    only_bad = [SkippedItem("bad.png", "truncated")] * 3
    assert list(caption_split(model, only_bad, VOCAB, batch_size=2)) == []
    beam = next(caption_split(model, items, VOCAB, batch_size=5, method="beam", beam_size=2))
    direct = model.generate(torch.stack([item.image for item in items]), method="beam",
                            beam_size=2)
    assert torch.equal(beam.tokens, direct.tokens)
    assert torch.allclose(beam.scores, direct.scores)


def test_the_global_random_state_is_left_alone(model):
    state = torch.get_rng_state()
    pruned = reprune(model, 0.5, "random")
    list(caption_split(pruned, _items(), VOCAB, batch_size=3))
    assert torch.equal(state, torch.get_rng_state())


def test_bad_arguments_are_named(model):
    with pytest.raises(ValueError, match="batch_size"):
        next(caption_split(model, _items(), VOCAB, batch_size=0))
    with pytest.raises(ValueError, match="max_images"):
        next(caption_split(model, _items(), VOCAB, max_images=-1))
    with pytest.raises(ValueError, match="method"):
        caption_images(model, _items(1)[0].image[None], VOCAB, method="sample")


def test_caption_dataset_collects_the_loop(model):
    items = _items()
    predictions, references = caption_dataset(model, items, VOCAB, device=torch.device("cpu"),
                                              batch_size=4, max_images=6)
    batches = list(caption_split(model, items, VOCAB, batch_size=4, max_images=6))
    assert predictions == {i: c for b in batches for i, c in zip(b.image_ids, b.captions,
                                                                  strict=True)}
    assert references[105] == ["a red circle 5", "a blue square"]


def test_score_pruning_scores_the_loops_captions_and_kept_tokens(model):
    from ptlib.experiments.study_eval import HeldOutSplit, score_pruning

    items = _items(4)
    truth = {item.image_id: SceneTruth(item.image_id, 64, 64, (
        TrueObject("circle", "red", "small", (0.0, 0.0, 32.0, 32.0), (16.0, 16.0)),))
        for item in items}
    references = {item.image_id: list(item.references) for item in items}
    with CaptionScorer(("BLEU", "CIDEr"), tokenizer="python") as scorer:
        split = HeldOutSplit("test", items, references, scorer.tokenize(references), truth)
        scores = score_pruning(model, VOCAB, split, scorer, ratio=0.5, method="norm",
                               batch_size=3)
    assert split.image_ids == [100, 101, 102, 103]
    assert scores["n_images"] == 4 and scores["tokens_kept"] == num_kept(GRID_TOKENS, 0.5)
    pruned = reprune(model, 0.5, "norm")
    batches = list(caption_split(pruned, items, VOCAB, batch_size=3))
    recalls = [kept_object_recall(cell_object_area(truth[i], model.encoder.grid), kept)
               for b in batches for i, kept in zip(b.image_ids, b.kept_indices.numpy(),
                                                    strict=True)]
    assert scores["kept_object_recall"] == pytest.approx(sum(recalls) / len(recalls))
    assert 0 < scores["kept_object_recall"] < 1
