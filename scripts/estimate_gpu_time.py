"""Estimate how long the book takes under the gpu profile on a Colab-class GPU.

The gpu profile's book time on a Colab-class GPU is an ESTIMATE (the lent H200
trained one gpu-profile captioner, ``results/gpu_training/``, but ran no whole
book), built from measurements and stated assumptions:

* measured: the FLOPs of one training image and of one caption of every shapes run
  config (:func:`ptlib.bench.flops.caption_flops`, teacher-forced pass x 3 for
  forward and backward), and the cpu profile's stored wall times
  (``results/cpu/``: pretraining, training, evaluation, pruning-study sweeps and the
  pointing game);
* assumed (Colab T4-class GPU, fp16 autocast): a sustained training throughput
  (``--train-tflops``; default: the H200's measured rate on ``shapes_vit_gpu``,
  since a T4 is not faster on so small a model), a greedy-generation throughput (``--generate-tflops``), and
  a data-loading rate (``--loader-images-per-s``, about what one core decodes at
  128 px here); scoring captions stays on the CPU and is taken as a share of the
  cpu profile's evaluation time (``--scoring-share``).

Each training costs max(compute, data loading); evaluation and sweeps scale the cpu
profile's time by the caption-FLOP ratio and the CPU/GPU rate ratio, plus scoring.
Writes ``results/estimates/gpu_book_time.json`` (quoted by book/setup.md)::

    python scripts/estimate_gpu_time.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from ptlib import course  # noqa: E402
from ptlib.bench.efficiency import build_variant, load_setup  # noqa: E402
from ptlib.bench.flops import caption_flops  # noqa: E402
from ptlib.experiments.grounding import grounding_models  # noqa: E402
from ptlib.experiments.pruning_study import study_labels  # noqa: E402
from ptlib.train import load_run_config  # noqa: E402

OUT = ROOT / "results" / "estimates" / "gpu_book_time.json"
CAPTION_TOKENS = 16
SHAPES_VOCAB = 40  # the shapes vocabulary (the 2033 cap would overstate the output head)


def flops(run_name: str) -> dict[str, float]:
    """Training FLOPs per image and generation FLOPs per caption of a run config."""
    setup = {**load_setup(run_name), "vocab_size": SHAPES_VOCAB}
    with torch.device("meta"):
        model = build_variant(setup, "memory", 0.3)
    size = setup["img_size"]
    forward = sum(caption_flops(model, size, CAPTION_TOKENS, mode="teacher_forced").values())
    caption = sum(caption_flops(model, size, CAPTION_TOKENS, mode="generate").values())
    return {"train_per_image": 3.0 * forward, "per_caption": float(caption)}


def stored(kind: str) -> dict[str, dict]:
    """The cpu profile's stored records of one kind, by run or sweep name (the newest
    record where a folder holds several)."""
    records = {}
    paths = sorted((ROOT / "results" / "cpu" / kind).glob("*/*.json"),
                   key=lambda path: path.stat().st_mtime)
    for path in paths:
        records[path.parent.name] = json.loads(path.read_text())
    return records


def stored_wall_s(kind: str) -> float:
    """Wall seconds of a kind's stored cpu records: one file, or one per model folder."""
    folder = ROOT / "results" / "cpu" / kind
    paths = [*folder.glob("*.json"), *folder.glob("*/*.json")]
    if not paths:
        raise FileNotFoundError(f"no stored cpu record under {folder}; run make results")
    return sum(json.loads(path.read_text())["wall_time_s"] for path in paths)


def h200_train_tflops(train_flops_per_image: float) -> float | None:
    """Training TFLOP/s the lent H200 achieved on ``shapes_vit_gpu`` (median epoch of
    ``results/gpu_training/shapes_vit_gpu.json``), or ``None`` without that record."""
    path = ROOT / "results" / "gpu_training" / "shapes_vit_gpu.json"
    if not path.is_file():
        return None
    rates = sorted(epoch["images_per_s"] for epoch in json.loads(path.read_text())["history"])
    return rates[len(rates) // 2] * train_flops_per_image / 1e12


def pretrained_runs(profile: course.Profile, model, variant: str) -> list[str]:
    """Run names of a profile's pretrained captioners of one encoder and variant
    (``scratch``: their baseline from a random encoder)."""
    from ptlib.pretrain.variants import SCRATCH, captioner_seeds

    suffix = model.name[len(model.backbone) + 1:]
    tag = variant if variant == SCRATCH else f"pretrained_{variant}"
    base = "_".join(part for part in (course.run_config_names(profile)[model.backbone],
                                      suffix, tag) if part)
    return [base + (f"_seed{seed}" if seed else "")
            for seed in captioner_seeds(profile, variant)]


def pretrain_chapter(add, gpu, cpu, captioners, training_s, evaluation_s, passes) -> None:
    """Chapter 4b: pretraining each encoder, then its frozen and fine-tuned captioners
    and their from-scratch baseline.

    GPU side: pretraining costs the gpu profile's ``pretrain.images`` training passes
    of that backbone's captioner (an upper bound: the pretext heads are smaller than
    the decoder), each captioner one gpu-profile training (frozen ones too: an upper
    bound, as their encoder neither trains nor runs after the first epoch) plus its
    evaluation, scaled from the cpu profile's. CPU side: the cpu profile's stored wall
    times (every seed); 0 for an encoder the cpu profile does not pretrain.
    """
    from ptlib.pretrain.job import pretrain_models
    from ptlib.pretrain.variants import SCRATCH, VARIANTS

    pretrained = stored("pretrain")
    images = int(gpu.section("pretrain")["images"])
    for model in pretrain_models(gpu):
        record = pretrained.get(model.name)
        add("4b", f"pretrain {model.name}", record["wall_time_s"] if record else 0.0,
            training_s(model.backbone, images))
        for variant in (*VARIANTS, SCRATCH):
            runs = [captioners[name] for name in pretrained_runs(cpu, model, variant)
                    if (record or variant == SCRATCH) and name in captioners]
            course_run = captioners[course.run_config_names(cpu)[model.backbone]]
            evaluation_cpu_s = max(run["wall_time_s"] - 60 * run["result"]["train_minutes"]
                                   for run in runs or [course_run])
            gpu_s = len(pretrained_runs(gpu, model, variant)) * (
                training_s(model.backbone, passes("gpu", model.backbone))
                + evaluation_s(model.backbone, evaluation_cpu_s))
            add("4b", f"{model.name} {variant} captioners",
                sum(run["wall_time_s"] for run in runs), gpu_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-tflops", type=float, default=None,
                        help="sustained training TFLOP/s (default: what the lent H200 "
                        "achieved on shapes_vit_gpu, results/gpu_training/; a T4 is no "
                        "faster on this small model; 8 without that record)")
    parser.add_argument("--generate-tflops", type=float, default=1.0,
                        help="greedy generation TFLOP/s (small one-token steps)")
    parser.add_argument("--loader-images-per-s", type=float, default=1000.0,
                        help="images/s the DataLoader workers decode at 128 px")
    parser.add_argument("--generate-images-per-s", type=float, default=80.0,
                        help="shapes images/s generated (measured: one core, 128 px)")
    parser.add_argument("--scoring-share", type=float, default=0.25,
                        help="share of the cpu evaluation time spent scoring (CPU-bound)")
    parser.add_argument("--notebooks-min", type=float, default=2.3,
                        help="the cpu book from stored results (measured here), minutes")
    args = parser.parse_args(argv)
    cpu, gpu = course.get_profile("cpu"), course.get_profile("gpu")
    names = {"cpu": course.run_config_names(cpu), "gpu": course.run_config_names(gpu)}
    cost = {p: {b: flops(n) for b, n in runs.items()} for p, runs in names.items()}
    configs = {p: {b: load_run_config(n) for b, n in runs.items()} for p, runs in names.items()}
    captioners = stored("captioners")
    measured = h200_train_tflops(cost["gpu"]["vit"]["train_per_image"])
    if args.train_tflops is None:
        args.train_tflops = round(measured, 2) if measured else 8.0

    def passes(profile: str, backbone: str, epochs: int | None = None, n: int | None = None):
        config = configs[profile][backbone]
        return (n or config["data"]["n_train"]) * (epochs or config["train"]["epochs"])

    # the CPU's achieved training rate, from the two course captioners
    cpu_rates = []
    for backbone, name in names["cpu"].items():
        record = captioners[name]["result"]
        work = cost["cpu"][backbone]["train_per_image"] * passes("cpu", backbone)
        cpu_rates.append(work / (record["train_minutes"] * 60))
    cpu_rate = sum(cpu_rates) / len(cpu_rates)
    generate_ratio = cpu_rate / (args.generate_tflops * 1e12)

    def training_s(backbone: str, image_passes: int) -> float:
        compute = cost["gpu"][backbone]["train_per_image"] * image_passes / (
            args.train_tflops * 1e12)
        return max(compute, image_passes / args.loader_images_per_s)

    def evaluation_s(backbone: str, cpu_seconds: float) -> float:
        scale = cost["gpu"][backbone]["per_caption"] / cost["cpu"][backbone]["per_caption"]
        images = (configs["gpu"][backbone]["data"]["n_test"]
                  / configs["cpu"][backbone]["data"]["n_test"])
        share = args.scoring_share
        return cpu_seconds * images * ((1 - share) * scale * generate_ratio + share)

    chapters: dict[str, dict[str, float]] = {}

    def add(chapter: str, what: str, cpu_s: float, gpu_s: float) -> None:
        entry = chapters.setdefault(chapter, {"cpu_min": 0.0, "gpu_min": 0.0, "parts": []})
        entry["cpu_min"] += cpu_s / 60
        entry["gpu_min"] += gpu_s / 60
        entry["parts"].append(what)

    n_images = sum(configs["gpu"]["vit"]["data"][k] for k in
                   ("n_train", "n_val", "n_test", "n_compositional"))
    cpu_images = sum(configs["cpu"]["vit"]["data"][k] for k in
                     ("n_train", "n_val", "n_test", "n_compositional"))
    add("1", "generate the shapes dataset", cpu_images / args.generate_images_per_s,
        n_images / args.generate_images_per_s)
    pretrain_chapter(add, gpu, cpu, captioners, training_s, evaluation_s, passes)
    for backbone, name in names["cpu"].items():
        record = captioners[name]
        train_s = record["result"]["train_minutes"] * 60
        add("5", f"train {names['gpu'][backbone]}", record["wall_time_s"],
            training_s(backbone, passes("gpu", backbone))
            + evaluation_s(backbone, record["wall_time_s"] - train_s))
    memorise = captioners[names["cpu"]["convnext"] + "_memorise"]
    overrides = dict(o.split("=", 1) for o in gpu.section("train")["memorise_overrides"])
    add("6", "memorisation run", memorise["wall_time_s"],
        training_s("convnext", int(overrides["data.n_train"]) * int(overrides["train.epochs"])))
    sweeps = stored("pruning_study")
    for label in study_labels(gpu):
        backbone = "vit" if label.startswith("vit") else "convnext"
        sweep = sweeps[label]
        trained = captioners.get(f"{names['cpu'][backbone]}_study_{label}")
        sweep_s = sweep["wall_time_s"] - (trained["wall_time_s"] if trained else 0.0)
        gpu_s = evaluation_s(backbone, sweep_s)
        if trained:
            train_s = trained["result"]["train_minutes"] * 60
            gpu_s += training_s(backbone, passes("gpu", backbone))
            gpu_s += evaluation_s(backbone, trained["wall_time_s"] - train_s)
        add("7", f"study sweep {label}", sweep["wall_time_s"], gpu_s)
    for model in grounding_models(gpu):  # chapter 8's own captioners (e.g. stride 16)
        if model.overrides and not model.pretrained:
            record = captioners[f"{names['cpu'][model.backbone]}_{model.tag}"]
            train_s = record["result"]["train_minutes"] * 60
            add("8", f"train {model.name}", record["wall_time_s"],
                training_s(model.backbone, passes("gpu", model.backbone))
                + evaluation_s(model.backbone, record["wall_time_s"] - train_s))
    for chapter, kind in (("8", "grounding"), ("9", "efficiency")):
        wall = stored_wall_s(kind)
        scale = max(cost["gpu"][b]["per_caption"] / cost["cpu"][b]["per_caption"]
                    for b in names["cpu"])
        # grounding captions on the GPU; efficiency times the shapes captioners on the CPU
        add(chapter, kind, wall, wall * scale * (generate_ratio if kind == "grounding" else 1))
    add("0-10", "executing the notebooks", args.notebooks_min * 60, args.notebooks_min * 60)
    total = {k: sum(c[k] for c in chapters.values()) for k in ("cpu_min", "gpu_min")}
    result = {
        "what": "ESTIMATE of the gpu profile's book build on a Colab-class GPU (T4); "
                "training TFLOP/s as measured on the lent H200 unless given",
        "measured_h200_train_tflops": measured,
        "assumptions": vars(args),
        "measured_cpu_gflops": cpu_rate / 1e9,
        "flops": cost,
        "chapters": {k: {**v, "cpu_min": round(v["cpu_min"], 1), "gpu_min": round(v["gpu_min"], 1)}
                     for k, v in chapters.items()},
        "total_min": {k: round(v, 1) for k, v in total.items()},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"this CPU trains at {cpu_rate / 1e9:.0f} GFLOP/s (from the stored cpu captioners)")
    print(f"training TFLOP/s assumed for the GPU: {args.train_tflops:g}"
          + (f" (the lent H200 measured {measured:.2f})" if measured else ""))
    print(f"{'chapter':8} {'cpu, from scratch':>18} {'gpu (estimate)':>15}")
    for chapter, entry in chapters.items():
        print(f"{chapter:8} {entry['cpu_min']:>14.1f} min {entry['gpu_min']:>11.1f} min")
    print(f"{'total':8} {total['cpu_min']:>14.1f} min {total['gpu_min']:>11.1f} min")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
