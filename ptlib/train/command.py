"""``ptlib train``, ``ptlib eval`` and ``ptlib caption``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ptlib import course, runtime

_SET_HELP = (
    "override one config value, e.g. --set train.epochs=5 --set model.prune_ratio=0.5 "
    "(repeatable; the value is read as YAML)"
)


def _report_left_out(command: str, dropped: list, skipped: list) -> None:
    """Say what the data left out: captions dropped from the annotations, unreadable images."""
    for items, what in ((dropped, "caption(s)/image(s) dropped from the annotation files"),
                        (skipped, "unreadable image(s) skipped")):
        if items:
            shown = "; ".join(f"{where}: {why}" for where, why in items[:3])
            more = f"; and {len(items) - 3} more" if len(items) > 3 else ""
            print(f"ptlib {command}: {len(items)} {what}: {shown}{more}")


def _train(args: argparse.Namespace) -> int:
    from ptlib.errors import check_output_dir
    from ptlib.train.run import train_run
    from ptlib.train.runconfig import load_run_config

    config = load_run_config(args.config, args.set or [])
    out_dir = Path(args.out) if args.out else course.checkpoint_dir() / config["name"]
    check_output_dir(out_dir, "--out" if args.out else "checkpoint folder")
    resume: Any = None
    if args.resume is not None:
        resume = "auto" if args.resume == "auto" else Path(args.resume)
    result = train_run(config, out_dir, resume=resume, device=args.device,
                       stop_at_epoch=args.stop_at_epoch, init_weights=args.init_from)
    print(f"ptlib train: {result.message}")
    if result.history:
        last = result.history[-1]
        print(
            f"last epoch: train loss {last['train_loss']:.4f}, train token acc "
            f"{100 * last['train_token_acc']:.2f}%, val token acc "
            f"{100 * last.get('val_token_acc', float('nan')):.2f}%"
        )
    _report_left_out("train", result.dropped, result.skipped)
    print(f"checkpoints and history in {out_dir}")
    return {"finished": 0, "paused": 0, "early_stopped": 0, "interrupted": 130, "nan": 3}[
        result.status
    ]


def _format_scores(scores: dict[str, Any]) -> str:
    keys = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE")
    parts = []
    for key in keys:
        if key in scores:
            value = scores[key]
            parts.append(f"{key} {'n/a' if value is None else f'{value:.4f}'}")
    lines = ["  ".join(parts)]
    for metric, why in (scores.get("unavailable") or {}).items():
        lines.append(f"{metric} unavailable: {why}")
    folds = scores.get("folds")
    if folds:
        lines.append("on reference folds (each caption vs 4 of the 5 references):")
        for name in ("floor", "model", "ceiling"):
            row = folds[name]
            lines.append(f"  {name:<8}" + "  ".join(
                f"{k} {row[k]:.4f}" for k in ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")
                if isinstance(row.get(k), float)))
        lines.append("  model / ceiling: " + "  ".join(
            f"{k} {100 * v:.1f}%" for k, v in folds["of_ceiling"].items()))
    correctness = scores.get("correctness")
    if correctness:
        lines.append(
            "correctness: strict exact object set "
            f"{100 * correctness['exact_set_accuracy']:.1f}% (lenient "
            f"{100 * correctness.get('exact_set_accuracy_lenient', float('nan')):.1f}%), "
            "unparseable "
            f"{correctness['n_unparseable']}/{correctness['n_images']}"
        )
    return "\n".join(lines)


def _eval(args: argparse.Namespace) -> int:
    from ptlib.errors import check_output_file
    from ptlib.metrics.results import write_results
    from ptlib.train.evaluate import caption_dataset, evaluate_captions, floor_model_ceiling
    from ptlib.train.run import build_run_data, instances_path, load_captioner

    out = Path(args.out) if args.out else Path(args.ckpt).parent / f"results_{args.split}.json"
    check_output_file(out, "--out" if args.out else "results file (set --out)")
    device = runtime.pick_device(args.device)
    model, vocab, config = load_captioner(args.ckpt, device)
    data = build_run_data(config["data"], splits=("train", args.split), vocab=vocab)
    if args.split not in data.datasets:
        raise ValueError(f"--split {args.split!r}: this dataset has {sorted(data.datasets)}")
    method = "beam" if args.beam > 1 else "greedy"
    predictions, references = caption_dataset(
        model, data.datasets[args.split], vocab, device=device, method=method,
        beam_size=args.beam, max_images=args.max_images, show_progress=True,
    )
    metrics = ("BLEU", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
    scores = evaluate_captions(predictions, references, metrics=metrics,
                               instances=instances_path(data, args.split))
    if not args.no_folds:
        train_references = {r.image_id: r.captions for r in data.datasets["train"].records}
        scores["folds"] = floor_model_ceiling(predictions, references, train_references)
    scores["checkpoint"] = str(args.ckpt)
    scores["split"], scores["decoding"] = args.split, f"{method} (beam {args.beam})"
    results_path, metrics_path = write_results(out, predictions, scores)
    print(_format_scores(scores))
    _report_left_out("eval", data.dropped, data.datasets[args.split].skipped)
    print(f"captions: {results_path}\nmetrics:  {metrics_path}")
    return 0


_CAPTION_BATCH = 16
"""Images captioned together by ``ptlib caption`` (loaded just before, never all at once)."""


def _caption(args: argparse.Namespace) -> int:
    import sys

    import torch

    from ptlib.data.images import BadImageError, load_rgb
    from ptlib.data.transforms import build_transform
    from ptlib.errors import check_output_file
    from ptlib.train.run import load_captioner

    paths = [Path(p) for p in args.images]
    if args.attention and len(paths) != 1:
        raise ValueError("--attention draws one image: pass exactly one IMAGE with it")
    if args.attention:
        check_output_file(args.attention, "--attention")
    device = runtime.pick_device(args.device)
    model, vocab, config = load_captioner(args.ckpt, device)
    img_size = int(config["model"]["img_size"])
    transform = build_transform(img_size)
    method = "beam" if args.beam > 1 else "greedy"
    done: list[dict[str, str]] = []
    failed: list[str] = []
    for start in range(0, len(paths), _CAPTION_BATCH):
        chunk: list[tuple[Path, Any]] = []
        for path in paths[start:start + _CAPTION_BATCH]:
            try:
                chunk.append((path, load_rgb(path)))
            except BadImageError as err:
                print(f"ptlib caption: error: {err}", file=sys.stderr)
                failed.append(str(path))
        if not chunk:
            continue
        batch = torch.stack([transform(picture) for _, picture in chunk]).to(device)
        result = model.generate(batch, method=method, beam_size=args.beam,
                                return_attention=bool(args.attention))
        captions = [vocab.decode(ids) for ids in result.tokens.tolist()]
        for (path, _), caption in zip(chunk, captions, strict=True):
            print(f"{path}: {caption}", flush=True)
            done.append({"image": str(path), "caption": caption})
        if args.attention:
            from ptlib.viz.attention import save_caption_attention

            save_caption_attention(chunk[0][1].resize((img_size, img_size)), captions[0],
                                   result, model, args.attention)
            print(f"attention map: {args.attention}")
    if args.json:
        print(json.dumps(done))
    if failed:
        print(f"ptlib caption: error: {len(failed)} of {len(paths)} image(s) could not be "
              f"captioned: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def add_parser(subparsers: Any) -> None:
    """Add ``train``, ``eval`` and ``caption`` to the ``ptlib`` command line."""
    from ptlib.cli import int_at_least
    from ptlib.train.runconfig import shipped_run_configs

    train = subparsers.add_parser(
        "train",
        help="train a captioner from a run config",
        description="Train a captioner. A run config (YAML) names the data, the model and the "
        f"training hyperparameters; shipped configs: {', '.join(shipped_run_configs())}. "
        "SIGINT/SIGTERM saves a checkpoint; --resume continues exactly. Distributed: "
        "torchrun --nproc-per-node N -m ptlib.cli train ...",
    )
    train.add_argument("--config", required=True, metavar="NAME|PATH",
                       help="a shipped run config name or a YAML file")
    train.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help=_SET_HELP)
    train.add_argument("--out", metavar="DIR",
                       help="output folder (default: the checkpoint directory / config name)")
    train.add_argument("--resume", nargs="?", const="auto", metavar="CKPT",
                       help="continue from CKPT, or from OUT/last.pt when given without a value")
    train.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    train.add_argument("--stop-at-epoch", type=int_at_least(1), metavar="N",
                       help="pause after N completed epochs (continue later with --resume)")
    train.add_argument("--init-from", metavar="CKPT",
                       help="start every weight from this captioner checkpoint (same model "
                            "and vocabulary): a second stage with another schedule, e.g. a "
                            "frozen-encoder captioner trained again with its encoder unfrozen")
    train.set_defaults(func=_train)

    evaluate = subparsers.add_parser(
        "eval",
        help="caption a split with a trained checkpoint and score it",
        description="Caption every image of a split and score the captions against all "
        "references: BLEU-1..4, METEOR (needs Java), ROUGE-L, CIDEr-D; SPICE is reported as "
        "unavailable offline. On the shapes dataset, caption correctness is scored too. "
        "Writes the captions in COCO results format and the metrics beside them.",
    )
    evaluate.add_argument("--ckpt", required=True, help="a checkpoint written by ptlib train")
    evaluate.add_argument("--split", default="test",
                          help="split to caption: test (default), val, compositional (shapes)")
    evaluate.add_argument("--beam", type=int_at_least(1), default=1,
                          help="beam size; 1 (default) decodes greedily")
    evaluate.add_argument("--max-images", type=int_at_least(0), default=0,
                          help="caption only the first N images (default: all)")
    evaluate.add_argument("--no-folds", action="store_true",
                          help="skip the floor / model / ceiling comparison on reference folds")
    evaluate.add_argument("--out", metavar="RESULTS.json",
                          help="results file (default: beside the checkpoint)")
    evaluate.add_argument("--device", default="auto", help="auto (default), cpu, cuda, mps")
    evaluate.set_defaults(func=_eval)

    caption = subparsers.add_parser(
        "caption",
        help="caption your own images with a trained checkpoint",
        description="Caption image files (any format Pillow reads; converted to RGB and resized "
        "to the model's input size).",
    )
    caption.add_argument("--ckpt", required=True, help="a checkpoint written by ptlib train")
    caption.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    caption.add_argument("--beam", type=int_at_least(1), default=3, help="beam size (default 3; 1 = greedy)")
    caption.add_argument("--attention", metavar="OUT.png",
                         help="also draw the cross-attention of each word over the image")
    caption.add_argument("--json", action="store_true", help="also print the captions as JSON")
    caption.add_argument("--device", default="auto", help="auto (default), cpu, cuda, mps")
    caption.set_defaults(func=_caption)
