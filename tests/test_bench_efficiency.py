"""ptlib bench efficiency: FLOPs by component, latency, batch capacity, the verdict, the GPU script."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ptlib import course, runcache
from ptlib.bench import BENCH_MODULES, efficiency
from ptlib.bench.batch_capacity import (
    ADAMW_STATES,
    FP32_BYTES,
    GIB,
    implied_max_batch,
    static_training_bytes,
    training_bytes,
)
from ptlib.bench.flops import FLOP_CATEGORIES, CategoryFlopCounter, caption_flops, flop_category
from ptlib.bench.latency import caption_latency
from ptlib.models import Captioner

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
TINY_MODEL = dict(
    img_size=64,  # 16 patch tokens for ViT-Ti/16, 4 for ConvNeXt-atto
    d_model=32,
    n_encoder_layers=1,
    n_decoder_layers=2,
    n_heads=2,
    ff_dim=64,
    max_len=24,
    dropout=0.1,
    prune_method="norm",
    pretrained=False,
    freeze_encoder=False,
)
VOCAB = 40


def _setup(encoder: str = "vit_tiny_patch16_224", name: str = "tiny_vit") -> dict:
    return {
        "name": name,
        "model": {**TINY_MODEL, "encoder": encoder},
        "vocab_size": VOCAB,
        "img_size": 64,
        "caption_len": 12,
    }


def _model(placement: str = "memory", ratio: float = 0.0, **kwargs) -> Captioner:
    torch.manual_seed(0)
    return efficiency.build_variant(_setup(), placement, ratio, **kwargs)


# --------------------------------------------------------------------------- FLOPs


def test_flop_category_maps_the_real_module_names():
    model = _model()
    categories = {name: flop_category(name) for name, _ in model.named_modules() if name}
    assert categories["encoder.model.blocks.0.attn.qkv"] == "encoder"
    assert categories["projection.linear"] == "projection"
    assert categories["decoder.layers.1.self_attn.k_proj"] == "self_attention"
    assert categories["decoder.layers.0.cross_attn.v_proj"] == "cross_attention"
    assert categories["decoder.layers.0.linear1"] == "ffn"
    assert categories["decoder.head"] == "output_head"
    assert categories["decoder"] is None and categories["decoder.layers.0"] is None
    # every module with matrix products belongs to a category (lookups and norms count no FLOPs)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
            assert categories.get(name) is not None, name


def test_counter_books_every_flop_once_and_counts_attention():
    """Our total equals torch's FlopCounterMode total when it is taught the CPU attention kernel."""
    model = _model().eval()
    images, tokens = torch.randn(1, 3, 64, 64), torch.randint(4, VOCAB, (1, 10))
    cpu_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu

    def attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query, key, value)

    with torch.no_grad(), CategoryFlopCounter(model) as ours:
        model(images, tokens)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # as CategoryFlopCounter does
    try:
        with (
            torch.no_grad(),
            FlopCounterMode(display=False, custom_mapping={cpu_flash: attention_flops}) as torchs,
        ):
            model(images, tokens)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    assert ours.total == torchs.get_total_flops() > 0
    assert torch.backends.mha.get_fastpath_enabled() == fastpath  # the counter restored it
    assert ours.counts["other"] == 0


def test_cross_attention_flops_match_the_formula_in_teacher_forcing():
    """Per layer: q and out projections 2*2*T*D^2, k and v 2*2*M*D^2, scores and mix 2*2*T*M*D."""
    model = _model("memory", 0.5)
    length, d, layers = 10, TINY_MODEL["d_model"], TINY_MODEL["n_decoder_layers"]
    m = model.num_memory_tokens
    counts = caption_flops(model, 64, length, mode="teacher_forced")
    expected = layers * (4 * length * d * d + 4 * m * d * d + 4 * length * m * d)
    assert counts["cross_attention"] == expected
    assert counts["ffn"] == layers * 2 * 2 * length * d * TINY_MODEL["ff_dim"]
    assert counts["output_head"] == 2 * length * d * VOCAB


def test_visual_transformer_layers_are_counted_in_inference():
    """nn.MultiheadAttention's fused inference kernel would hide them; the counter must not."""
    model = _model()
    n, c, d, ff = (
        model.encoder.num_tokens,
        model.encoder.width,
        TINY_MODEL["d_model"],
        TINY_MODEL["ff_dim"],
    )
    layer = 8 * n * d * d + 4 * n * n * d + 4 * n * d * ff
    expected = 2 * n * c * d + TINY_MODEL["n_encoder_layers"] * layer
    assert caption_flops(model, 64, 4)["projection"] == expected


def test_memory_pruning_scales_only_cross_attention_linearly():
    ratios = (0.0, 0.25, 0.5, 0.75)
    rows = []
    for ratio in ratios:
        model = _model("memory", ratio)
        rows.append((model.num_memory_tokens, caption_flops(model, 64, 8, mode="generate")))
    kept = [k for k, _ in rows]
    assert kept == sorted(kept, reverse=True) and len(set(kept)) == len(kept)
    for category in ("encoder", "projection", "self_attention", "ffn", "output_head"):
        assert len({counts[category] for _, counts in rows}) == 1, category
    # linear in kept tokens: equal FLOPs per dropped token between every pair
    cross = [counts["cross_attention"] for _, counts in rows]
    slopes = [(cross[i] - cross[0]) / (kept[i] - kept[0]) for i in range(1, len(rows))]
    assert all(math.isclose(s, slopes[0]) for s in slopes) and slopes[0] > 0


def test_encoder_pruning_reduces_encoder_flops():
    counts = [caption_flops(_model("encoder", r), 64, 4)["encoder"] for r in (0.0, 0.3, 0.7)]
    assert counts[0] > counts[1] > counts[2] > 0


def test_counting_on_the_meta_device_agrees_with_computing():
    setup = _setup()
    with torch.device("meta"):
        meta = efficiency.build_variant(setup, "encoder", 0.5)
    real = efficiency.build_variant(setup, "encoder", 0.5)
    assert caption_flops(meta, 64, 3) == caption_flops(real, 64, 3)


def test_caption_flops_rejects_bad_arguments():
    model = _model()
    with pytest.raises(ValueError, match="mode"):
        caption_flops(model, 64, 4, mode="beam")
    with pytest.raises(ValueError, match="caption_tokens=99"):
        caption_flops(model, 64, 99)


# --------------------------------------------------------------------------- batch capacity


def test_static_bytes_count_params_grads_and_adamw():
    model = _model(freeze_encoder=True)
    static = static_training_bytes(model)
    assert 0 < static["trainable_params"] < static["params"]
    assert static["param_bytes"] == static["params"] * FP32_BYTES
    assert static["grad_bytes"] == static["trainable_params"] * FP32_BYTES
    assert static["optimizer_bytes"] == static["trainable_params"] * FP32_BYTES * ADAMW_STATES


def test_saved_bytes_pruning_bound_and_frozen_encoder():
    def per_image(placement: str, ratio: float, frozen: bool) -> float:
        model = _model(placement, ratio, freeze_encoder=frozen)
        return training_bytes(model, 64, 12, batch_sizes=(1, 3))["per_image_bytes"]

    full, pruned = per_image("memory", 0.0, False), per_image("memory", 0.3, False)
    assert 0.7 * full <= pruned < full  # the bound: only the decoder's visual memory shrinks
    assert per_image("memory", 0.0, True) < full  # a frozen encoder saves nothing for backward
    assert per_image("encoder", 0.3, False) < pruned  # pruning inside the ViT saves more


def test_per_image_bytes_is_a_slope_and_parameters_are_left_out():
    model = _model().eval()
    measured = training_bytes(model, 64, 12, batch_sizes=(1, 2, 4))
    by_batch = {int(b): v for b, v in measured["saved_bytes_by_batch"].items()}
    assert measured["per_image_bytes"] == pytest.approx((by_batch[4] - by_batch[1]) / 3)
    # saved activations grow ~linearly; parameters (static) are not in the saved figure
    assert by_batch[2] == pytest.approx(2 * by_batch[1], rel=0.05)
    assert measured["fixed_saved_bytes"] < 0.05 * measured["static_bytes"]
    assert not model.training  # measured in training mode, then restored


def test_training_bytes_and_implied_batch_reject_bad_input():
    with pytest.raises(ValueError, match="batch_sizes"):
        training_bytes(_model(), 64, 12, batch_sizes=(2, 2))
    with pytest.raises(ValueError, match="per_image_bytes"):
        implied_max_batch({"per_image_bytes": 0, "static_bytes": 0, "fixed_saved_bytes": 0})


def test_implied_max_batch_arithmetic():
    memory = {"per_image_bytes": 0.5 * GIB, "static_bytes": 3 * GIB, "fixed_saved_bytes": 1 * GIB}
    assert implied_max_batch(memory, card_bytes=24 * GIB, workspace_bytes=1 * GIB) == 38
    assert implied_max_batch({**memory, "static_bytes": 30 * GIB}) == 0


def _capacity_table() -> dict:
    config = {
        "batch_capacity": {
            "setups": [_setup()],
            "ratios": [0.0, 0.3],
            "batch_sizes": [1, 2],
            "dtypes": ["fp32"],
            "card_gib": 24.0,
            "workspace_gib": 1.0,
        }
    }
    return efficiency.batch_capacity_table(config)


def test_batch_capacity_verdict_is_computed_from_the_table():
    table = _capacity_table()
    assert {r["encoder_training"] for r in table["rows"]} == {"fine-tuned", "frozen"}
    verdict = efficiency.batch_capacity_verdict(table)
    memory_pairs = [c for c in verdict["comparisons"] if c["placement"] == "memory"]
    assert len(memory_pairs) == 2  # fine-tuned and frozen
    for pair in memory_pairs:
        assert 0.7 <= pair["per_image_ratio"] <= 1.0
        assert pair["max_batch_gain"] < verdict["bound"] < verdict["paper_gain"]
    assert verdict["bound"] == pytest.approx(1 / 0.7)
    assert verdict["paper_gain"] == pytest.approx(128 / 48)
    assert verdict["supports_claim"] is False
    assert "text" not in verdict  # numbers only: chapter 9 writes the sentences
    best = verdict["best"]
    assert best in memory_pairs
    assert best["max_batch_gain"] == max(c["max_batch_gain"] for c in memory_pairs)
    assert verdict["best_any"]["max_batch_gain"] >= best["max_batch_gain"]
    assert verdict["n_settings"] == 2
    low, high = verdict["per_image_ratio_range"]
    assert low == min(c["per_image_ratio"] for c in memory_pairs)
    assert high == max(c["per_image_ratio"] for c in memory_pairs)
    assert verdict["paper_batch"] == (48, 128) and verdict["ratio"] == 0.3
    assert verdict["best_any_above_bound"] is (
        verdict["best_any"]["max_batch_gain"] > verdict["bound"])
    with pytest.raises(ValueError, match="prune ratio 0 and"):
        efficiency.batch_capacity_verdict({"rows": table["rows"]}, ratio=0.5)


# --------------------------------------------------------------------------- latency


def test_caption_latency_times_every_model_interleaved():
    models = {"none": _model("memory", 0.0), "pruned": _model("memory", 0.5)}
    timed = caption_latency(models, 64, batch_size=2, caption_tokens=3, repeats=2)
    assert set(timed) == {"none", "pruned"}
    assert timed["none"]["tokens"] == 16 and timed["pruned"]["tokens"] == 8
    for row in timed.values():
        assert 0 < row["min_s"] <= row["median_s"]
        assert row["images_per_s"] == pytest.approx(2 / row["median_s"])
    with pytest.raises(ValueError, match="empty"):
        caption_latency({}, 64)
    with pytest.raises(ValueError, match="repeats=0"):
        caption_latency(models, 64, repeats=0)


# --------------------------------------------------------------------------- config, CLI


def test_ci_config_reads_run_configs_and_variants():
    profile = course.get_profile("ci")
    config = efficiency.efficiency_config(profile)
    names = [s["name"] for s in config["flops"]["setups"]]
    assert names == list(efficiency.shapes_runs(profile)) == ["shapes_vit_ci",
                                                              "shapes_convnext_ci"]
    assert config["ratios"] == [float(r) for r in profile.section("inference")["prune_ratios"]]
    assert config["batch_capacity"]["ratios"] == [0.0, 0.3]
    assert all(s["model"]["pretrained"] is False for s in config["flops"]["setups"])
    vit, convnext = _setup(), _setup("convnext_atto", "tiny_convnext")
    assert {p for p, _ in efficiency.variants(vit, [0.0, 0.5])} == {"memory", "encoder"}
    assert list(efficiency.variants(convnext, [0.0, 0.5])) == [("memory", 0.0), ("memory", 0.5)]
    json.dumps(config)  # run_or_load needs it JSON-serialisable


def test_bench_command_prints_tables_and_writes_json(tmp_path, monkeypatch, capsys):
    from ptlib.cli import main

    assert "ptlib.bench.efficiency_command" in BENCH_MODULES
    tiny = {
        "profile": "ci",
        "seed": 0,
        "ratios": [0.0, 0.5],
        "flops": {"setups": [_setup()], "caption_tokens": 4, "device": "cpu"},
        "latency": {"setups": [_setup()], "batch_size": 1, "caption_tokens": 2, "repeats": 1},
        "batch_capacity": {
            "setups": [_setup()],
            "ratios": [0.0, 0.3],
            "batch_sizes": [1, 2],
            "dtypes": ["fp32"],
            "card_gib": 24.0,
            "workspace_gib": 1.0,
        },
    }
    monkeypatch.setattr(efficiency, "efficiency_config", lambda profile, paper_latency: tiny)
    out = tmp_path / "efficiency.json"
    assert main(["bench", "efficiency", "--profile", "ci", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "FLOPs per caption" in printed and "paper: 48 -> 128 (2.67x)" in printed
    record = json.loads(out.read_text())
    flops_rows = record["result"]["flops"]["rows"]
    assert {r["placement"] for r in flops_rows} == {"memory", "encoder"}
    assert all(set(FLOP_CATEGORIES) <= set(r) for r in flops_rows)
    latency = record["result"]["latency"]["rows"]
    assert [r["time_ratio"] for r in latency if r["ratio"] == 0] == [1.0]
    assert record["config"] == tiny and "torch" in record["versions"]


# --------------------------------------------------------------------------- GPU script


def test_gpu_script_dry_run_finds_the_simulated_capacity(tmp_path):
    path = ROOT / "scripts" / "gpu_memory_check.py"
    spec = importlib.util.spec_from_file_location("gpu_memory_check", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    # the search alone, on a made-up capacity
    result = script.largest_batch(lambda b: b <= 37, start=8, limit=4096)
    assert result["max_batch"] == 37 and not result["capped"]
    assert script.largest_batch(lambda b: b <= 3, start=8)["max_batch"] == 3
    assert script.largest_batch(lambda b: True, start=8, limit=64) == {
        "max_batch": 64,
        "capped": True,
        "tried": [[8, True], [16, True], [32, True], [64, True]],
    }
    argv = [
        "--dry-run",
        "--dry-run-capacity",
        "5",
        "--out",
        str(tmp_path),
        "--setups",
        "dry_vit",
        "--training",
        "frozen",
        "--placements",
        "memory",
    ]
    assert script.main(argv) == 0
    record = json.loads((tmp_path / script.RESULT_NAME).read_text())
    assert record["dry_run"] is True
    assert [(r["placement"], r["ratio"]) for r in record["rows"]] == [
        ("memory", 0.0),
        ("memory", 0.3),
    ]
    for row in record["rows"]:
        assert row["max_batch"] == 5 and row["encoder_training"] == "frozen"
        assert row["train_images_per_s"] > 0 and row["caption_images_per_s"] > 0


# --------------------------------------------------------------------------- stored results


def _rekey_script():
    spec = importlib.util.spec_from_file_location("rekey_results",
                                                  ROOT / "scripts" / "rekey_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rekey_renames_the_memory_section_and_moves_the_record(tmp_path):
    rekey = _rekey_script()
    old = {"config": {"seed": 0, "memory": {"ratios": [0.0, 0.3]}},
           "result": {"flops": {}, "memory": {"rows": [1]}}, "name": "cpu/efficiency"}
    new = rekey.rekey(old, "efficiency")
    assert new["config"] == {"seed": 0, "batch_capacity": {"ratios": [0.0, 0.3]}}
    assert new["result"] == {"flops": {}, "batch_capacity": {"rows": [1]}}
    assert old["config"]["memory"] and new["name"] == old["name"]  # the input is kept
    assert rekey.rekey(new, "efficiency") == new and rekey.rekey(old, "training") == old
    with pytest.raises(ValueError, match="both"):
        rekey.rekey({"config": {"memory": 1, "batch_capacity": 2}}, "efficiency")
    folder = tmp_path / "cpu" / "efficiency"
    folder.mkdir(parents=True)
    (folder / f"{runcache.config_key(old['config'])}.json").write_text(json.dumps(old))
    assert rekey.rekey_folder(tmp_path, check=True) and len(list(folder.iterdir())) == 1
    rekey.rekey_folder(tmp_path)
    assert [p.name for p in folder.iterdir()] == [f"{runcache.config_key(new['config'])}.json"]
    assert rekey.rekey_folder(tmp_path) == []


def test_stored_cpu_efficiency_result_is_found_by_the_current_config():
    # the book loads it rather than measuring again: its config is what efficiency_config
    # builds now, and no stored record still uses a renamed section
    config = efficiency.efficiency_config(course.get_profile("cpu", check_data=False))
    path = ROOT / "results" / "cpu" / "efficiency" / f"{runcache.config_key(config)}.json"
    record = json.loads(path.read_text())
    assert record["config"] == config
    assert set(record["result"]) == {"flops", "latency", "batch_capacity"}
    assert _rekey_script().rekey_folder(ROOT / "results", check=True) == []
