"""The chapter-8 demo and the attention-map drawing it uses (tiny untrained captioners)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from matplotlib import pyplot as plt
from PIL import Image

from ptlib.data.vocab import Vocabulary
from ptlib.metrics.correctness import SceneTruth, TrueObject
from ptlib.models import Captioner, num_kept
from ptlib.viz.attention import attention_grid, draw_word_attention, upsample_grid
from ptlib.viz.demo import (
    build_demo,
    caption_with_attention,
    content_positions,
    demo_methods,
    demo_view,
    read_upload,
)

WORDS = ["a", "small", "red", "circle", "square"]
VOCAB = Vocabulary(["<pad>", "<bos>", "<eos>", "<unk>", *WORDS])
STEPS = 5  # max_len 6: <bos> + 5 generated tokens
SCENE = SceneTruth(3, 64, 64, (TrueObject("circle", "red", "small", (0.0, 0.0, 40.0, 40.0),
                                          (20.0, 20.0)),))


@pytest.fixture(autouse=True)
def _one_thread_and_closed_figures():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    plt.close("all")


def _circle_model(encoder: str) -> Captioner:
    """An untrained captioner whose output bias makes it say "circle" at every step."""
    torch.manual_seed(0)
    model = Captioner.from_config(dict(
        encoder=encoder, img_size=64, d_model=16, n_encoder_layers=0, n_decoder_layers=1,
        n_heads=2, ff_dim=32, max_len=STEPS + 1, vocab_size=len(VOCAB), prune_ratio=0.0,
        prune_method="none",
    )).eval()
    with torch.no_grad():
        model.decoder.head.bias[VOCAB.stoi["circle"]] = 1e4
    return model


@pytest.fixture(scope="module")
def models():
    return {"vit": (_circle_model("vit_tiny_patch16_224"), VOCAB),
            "convnext": (_circle_model("convnext_atto"), VOCAB)}


class _Images:
    """The part of a CaptionDataset the demo uses: records and load_image."""

    def __init__(self) -> None:
        record = type("Record", (), {"image_id": 3})
        self.records = [record(), record()]

    def __len__(self) -> int:
        return len(self.records)

    def load_image(self, index: int) -> Image.Image:
        return Image.new("RGB", (64, 64), (200, 30, 30) if index == 0 else (30, 30, 200))


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (20, 160, 60)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_methods_follow_the_backbone(models):
    assert "cls_attention" in demo_methods(models["vit"][0])
    assert "cls_attention" not in demo_methods(models["convnext"][0])
    assert "learned" not in demo_methods(models["vit"][0])  # no trained scorer


def test_caption_with_attention_prunes_draws_and_points(models):
    model, vocab = models["vit"]
    trained_pruner = model.pruner
    out = caption_with_attention(model, vocab, Image.new("RGB", (64, 64)), method="norm",
                                 ratio=0.5, truth=SCENE, max_words=3)
    assert out.caption == " ".join(["circle"] * STEPS) and out.method == "norm"
    assert (out.kept_tokens, out.total_tokens) == (num_kept(16, 0.5), 16)
    assert model.pruner is trained_pruner  # the trained model is left as it was
    titles = [ax.get_title() for ax in out.figure.axes if ax.get_title()]
    assert titles == ["image", f"kept {out.kept_tokens}/16", "mean", "circle", "circle", "circle"]
    assert len(out.trials) == STEPS and all(t.scored for t in out.trials)
    assert "pointing game" in out.summary() and "8/16 tokens kept" in out.summary()


def test_ratio_zero_keeps_everything_and_bad_methods_are_refused(models):
    model, vocab = models["convnext"]
    out = caption_with_attention(model, vocab, Image.new("RGB", (90, 50)), method="merge", ratio=0)
    assert out.method == "none" and out.kept_tokens == out.total_tokens and out.trials == []
    with pytest.raises(ValueError, match="cls_attention"):
        caption_with_attention(model, vocab, Image.new("RGB", (64, 64)), method="cls_attention",
                               ratio=0.3)


def test_demo_view_uses_the_upload_instead_of_the_test_image(models):
    dataset, truth = _Images(), {3: SCENE}
    indexed = demo_view(models, dataset, truth, index=1, backbone="vit", method="random", ratio=0.3)
    assert indexed.trials and indexed.method == "random"
    uploaded = demo_view(models, dataset, truth, index=1, backbone="convnext", ratio=0.3,
                         upload=({"name": "x.png", "content": memoryview(_png_bytes())},))
    assert uploaded.trials == [] and uploaded.kept_tokens == num_kept(uploaded.total_tokens, 0.3)
    with pytest.raises(ValueError, match="index"):
        demo_view(models, dataset, truth, index=5, backbone="vit")
    with pytest.raises(ValueError, match="backbone"):
        demo_view(models, dataset, truth, backbone="resnet")


def test_read_upload_accepts_both_ipywidgets_formats_and_names_bad_files():
    assert read_upload(()) is None
    assert read_upload({"x.png": {"content": _png_bytes()}}).size == (40, 30)
    assert read_upload(({"content": memoryview(_png_bytes())},)).mode == "RGB"
    with pytest.raises(ValueError, match="PNG or JPEG"):
        read_upload(b"not an image")


def test_widgets_build_without_a_frontend_and_follow_their_controls(models, capsys):
    ui = build_demo(models, _Images(), {3: SCENE}, ratio=0.3)
    assert "ratio 0.3" in capsys.readouterr().out  # the first state is drawn at once
    (left, right) = ui.children[0].children
    backbone, method, ratio = right.children
    method.value = "cls_attention"
    capsys.readouterr()
    ratio.value = 0.7
    assert "cls_attention, ratio 0.7" in capsys.readouterr().out
    backbone.value = "convnext"  # ConvNeXt has no class token: the method falls back
    assert method.value == "norm" and "cls_attention" not in method.options
    assert "norm, ratio 0.7" in capsys.readouterr().out


def test_content_positions_pick_size_colour_and_shape_words():
    assert content_positions(["a", "small", "red", "circle", "to", "the", "left"]) == [1, 2, 3]
    assert content_positions(["a", "an"]) == [0, 1]


def test_upsample_nearest_repeats_cells_and_bilinear_stays_between_kept_values():
    heat = attention_grid(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0, 1, 3]), (2, 2))
    assert np.isnan(heat[1, 0])
    nearest = upsample_grid(heat, (4, 4), "nearest")
    np.testing.assert_allclose(nearest[:2, 2:], 0.2)
    assert np.isnan(nearest[2:, :2]).all() and not np.isnan(nearest[:2]).any()
    smooth = upsample_grid(heat, (8, 8), "bilinear")
    assert np.array_equal(np.isnan(smooth), np.isnan(upsample_grid(heat, (8, 8), "nearest")))
    kept = smooth[~np.isnan(smooth)]
    assert kept.min() >= 0.1 - 1e-6 and kept.max() <= 0.3 + 1e-6 and len(np.unique(kept)) > 3
    flat = upsample_grid(np.full((3, 3), 0.5), (9, 9), "bilinear")
    np.testing.assert_allclose(flat, 0.5)
    with pytest.raises(ValueError, match="mode"):
        upsample_grid(heat, (4, 4), "cubic")


def test_word_attention_panels_and_positions():
    attention = torch.softmax(torch.randn(4, 3), dim=-1)
    kept = torch.tensor([0, 2, 3])
    fig = draw_word_attention(Image.new("RGB", (32, 32)), ["a", "red", "circle", "x"], attention,
                              kept, (2, 2), positions=[2], upsample="bilinear")
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in panels] == ["image", "mean", "circle"]
    # one colour bar for both maps, which share one scale from 0 to the largest weight
    assert len(fig.axes) - len(panels) == 1
    mean_map, word_map = panels[1].images[1], panels[2].images[1]
    assert mean_map.norm.vmin == word_map.norm.vmin == 0.0
    largest = max(float(attention.mean(dim=0).max()), float(attention[2].max()))
    assert word_map.norm.vmax == pytest.approx(largest)
    assert mean_map.norm.vmax == word_map.norm.vmax
    with pytest.raises(ValueError, match="positions"):
        draw_word_attention(Image.new("RGB", (32, 32)), ["a"], attention, kept, (2, 2),
                            positions=[3])
