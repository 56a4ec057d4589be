"""Real training memory, largest batch and throughput of the paper's setup on a CUDA GPU.

Chapter 9 estimates training memory without a GPU (bytes saved for backward,
``ptlib bench efficiency``). This script measures it on a GPU, for the paper's
setup (ViT-B/16 and ConvNeXt-T at 224 px, Table 1 decoder, vocabulary 2033,
captions of 22 tokens, AdamW, random weights: memory and speed do not depend on
them), with the encoder fine-tuned and frozen, at prune ratio 0 and 0.3 (after
the encoder, the paper's placement; inside the ViT as a contrast):

* the peak memory of a training step (``torch.cuda.max_memory_allocated``:
  forward under autocast, backward, optimizer step) at a few batch sizes;
* the largest batch whose training step fits in ``--card-gib`` GiB (default 24,
  an RTX 4090), emulated on a larger GPU with
  ``torch.cuda.set_per_process_memory_fraction``: doubling until out of memory,
  then bisection;
* training throughput (images/s) and captioning throughput (greedy, KV cache,
  20 tokens, no early stop) at a fixed batch.

Run it from the repository root (in one go, a few minutes on a large GPU)::

    python scripts/gpu_memory_check.py --out "$OUT"      # writes $OUT/gpu_memory_check.json
    python scripts/gpu_memory_check.py --dry-run --out /tmp/x   # CPU sanity check, tiny models

The JSON is written again after every configuration, so a run stopped by a time
limit keeps what it measured. ``--dry-run`` runs the same code on the CPU with
tiny captioners and a simulated capacity (a batch above ``--dry-run-capacity``
raises ``torch.OutOfMemoryError``), so the search and the bookkeeping are tested
without a GPU; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

try:
    import ptlib  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ptlib import course, files, runtime  # noqa: E402
from ptlib.bench.efficiency import PAPER_RUNS, build_variant, load_setup  # noqa: E402
from ptlib.tokens import SPECIAL_TOKENS  # noqa: E402
from ptlib.train.step import caption_loss_sum  # noqa: E402

GIB = 2**30
OutOfMemoryError = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
"""``torch.OutOfMemoryError`` (torch >= 2.5), or its CUDA-only predecessor: ptlib needs 2.3."""
RESULT_NAME = "gpu_memory_check.json"
VARIANTS: tuple[tuple[str, str, float], ...] = (
    ("fine-tuned", "memory", 0.0),
    ("fine-tuned", "memory", 0.3),
    ("fine-tuned", "encoder", 0.3),
    ("frozen", "memory", 0.0),
    ("frozen", "memory", 0.3),
    ("frozen", "encoder", 0.3),
)
"""(encoder training, placement, prune ratio); ``encoder`` placement is skipped for ConvNeXt."""

DRY_RUN_SETUP: dict[str, Any] = {
    "model": {
        "img_size": 64,
        "d_model": 32,
        "n_encoder_layers": 1,
        "n_decoder_layers": 1,
        "n_heads": 2,
        "ff_dim": 64,
        "max_len": 22,
        "dropout": 0.1,
        "prune_method": "norm",
        "pretrained": False,
        "freeze_encoder": False,
    },
    "vocab_size": 50,
    "img_size": 64,
    "caption_len": 22,
}
DRY_RUN_ENCODERS = {"dry_vit": "vit_tiny_patch16_224", "dry_convnext": "convnext_atto"}


class Backend:
    """What the measurements need from the device: CUDA for real, or a CPU simulation."""

    def __init__(self, device: torch.device, dry_run_capacity: int | None = None) -> None:
        self.device = device
        self.dry_run_capacity = dry_run_capacity

    @property
    def dry_run(self) -> bool:
        return self.dry_run_capacity is not None

    def check_fits(self, batch_size: int) -> None:
        """Raise ``torch.OutOfMemoryError`` for a batch above the simulated capacity."""
        if self.dry_run and batch_size > self.dry_run_capacity:
            raise OutOfMemoryError(f"simulated: batch {batch_size} > {self.dry_run_capacity}")

    def reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_bytes(self) -> int | None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device))
        return None

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def free(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class TrainingStep:
    """One AdamW training step of a captioner on random data, under autocast.

    Args:
        model: The captioner, on ``backend.device``.
        setup: Its setup (``img_size``, ``caption_len``, ``vocab_size``).
        backend: The device wrapper.
        amp_dtype: Autocast dtype, ``None`` for fp32.
    """

    def __init__(
        self, model: torch.nn.Module, setup: dict[str, Any], backend: Backend, amp_dtype: Any
    ) -> None:
        self.model = model
        self.setup = setup
        self.backend = backend
        self.amp_dtype = amp_dtype
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=1e-4)

    def _batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.backend.device
        size = self.setup["img_size"]
        images = torch.randn(batch_size, 3, size, size, device=device)
        tokens = torch.randint(
            len(SPECIAL_TOKENS),
            self.setup["vocab_size"],
            (batch_size, self.setup["caption_len"]),
            device=device,
        )
        tokens[:, 0] = self.model.bos_id
        return images, tokens

    def __call__(self, batch_size: int, steps: int = 1) -> None:
        self.backend.check_fits(batch_size)
        self.model.train()
        images, tokens = self._batch(batch_size)
        enabled = self.amp_dtype is not None
        for _ in range(steps):
            with torch.autocast(
                self.backend.device.type, dtype=self.amp_dtype or torch.float32, enabled=enabled
            ):
                out = self.model(images, tokens[:, :-1])
            loss_sum, n_tokens = caption_loss_sum(out.logits, tokens[:, 1:])
            (loss_sum / n_tokens + out.aux_loss.float()).backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)

    def fits(self, batch_size: int) -> bool:
        """Whether two training steps at ``batch_size`` run without running out of memory."""
        try:
            self(batch_size, steps=2)
            return True
        except OutOfMemoryError:
            self.optimizer.zero_grad(set_to_none=True)
            return False
        finally:
            self.backend.free()


def largest_batch(fits: Callable[[int], bool], start: int = 8, limit: int = 8192) -> dict[str, Any]:
    """The largest batch size for which ``fits`` holds (doubling, then bisection).

    Args:
        fits: Tries one batch size; ``True`` if it ran.
        start: First size tried.
        limit: Stop doubling here (the result is then ``limit`` with ``capped=True``).

    Returns:
        ``{"max_batch", "capped", "tried": [[size, fitted], ...]}``; ``max_batch`` is 0
        if not even 1 fits.
    """
    tried: list[list[Any]] = []

    def attempt(size: int) -> bool:
        ok = fits(size)
        tried.append([size, ok])
        return ok

    low, high = 0, None  # low fits (0: nothing yet), high does not
    size = start
    while size <= limit:
        if not attempt(size):
            high = size
            break
        low, size = size, size * 2
    if high is None:
        return {"max_batch": low, "capped": True, "tried": tried}
    while high - low > 1:  # bisection; also finds sizes below `start` when `start` fails
        middle = (low + high) // 2
        if attempt(middle):
            low = middle
        else:
            high = middle
    return {"max_batch": low, "capped": False, "tried": tried}


def throughput(run: Callable[[], None], backend: Backend, images: int, repeats: int) -> float:
    """Images per second of ``run`` (which processes ``images`` images), after one warm-up."""
    run()
    backend.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    backend.synchronize()
    return images * repeats / (time.perf_counter() - start)


def measure_variant(
    setup: dict[str, Any],
    training: str,
    placement: str,
    ratio: float,
    backend: Backend,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """All measurements of one configuration."""
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[args.amp]
    torch.manual_seed(0)
    model = build_variant(setup, placement, ratio, freeze_encoder=training == "frozen")
    model.to(backend.device)
    step = TrainingStep(model, setup, backend, amp_dtype)
    row: dict[str, Any] = {
        "setup": setup["name"],
        "encoder": setup["model"]["encoder"],
        "encoder_training": training,
        "placement": placement,
        "ratio": ratio,
        "memory_tokens": model.num_memory_tokens,
        "amp": args.amp,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    peaks = {}
    for size in args.peak_batches:
        backend.reset_peak()
        try:
            step(size, steps=2)
            peaks[str(size)] = backend.peak_bytes()
        except OutOfMemoryError:
            peaks[str(size)] = "out of memory"
        finally:
            step.optimizer.zero_grad(set_to_none=True)
            backend.free()
    row["peak_bytes_by_batch"] = peaks
    numeric = [(int(b), v) for b, v in peaks.items() if isinstance(v, int)]
    if len(numeric) >= 2:
        (b0, p0), (b1, p1) = numeric[0], numeric[-1]
        row["peak_bytes_per_image"] = (p1 - p0) / (b1 - b0)
    row.update(largest_batch(step.fits, start=args.search_start, limit=args.search_limit))
    batch = max(1, min(args.throughput_batch, row["max_batch"] or 1))
    row["throughput_batch"] = batch
    try:
        row["train_images_per_s"] = throughput(
            lambda: step(batch), backend, batch, args.throughput_repeats
        )
        images = torch.randn(batch, 3, setup["img_size"], setup["img_size"], device=backend.device)

        def caption() -> None:
            with torch.autocast(
                backend.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                model.generate(images, max_len=args.caption_tokens, stop_at_eos=False)

        row["caption_images_per_s"] = throughput(caption, backend, batch, args.throughput_repeats)
    except OutOfMemoryError as err:
        row["throughput_error"] = f"out of memory: {err}"
    return row


def _setups(dry_run: bool) -> list[dict[str, Any]]:
    if not dry_run:
        return [load_setup(name) for name in PAPER_RUNS]
    return [
        {**DRY_RUN_SETUP, "name": name, "model": {**DRY_RUN_SETUP["model"], "encoder": encoder}}
        for name, encoder in DRY_RUN_ENCODERS.items()
    ]


def _write(path: Path, payload: dict[str, Any]) -> None:
    files.atomic_write_text(path, json.dumps(payload, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: $OUT, else results/gpu_memory_check)",
    )
    parser.add_argument("--dry-run", action="store_true", help="CPU sanity check with tiny models")
    parser.add_argument("--dry-run-capacity", type=int, default=6, help="simulated max batch")
    parser.add_argument("--card-gib", type=float, default=24.0, help="emulated card size (GiB)")
    parser.add_argument("--amp", choices=["bf16", "fp16", "fp32"], default="bf16")
    parser.add_argument("--peak-batches", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--search-start", type=int, default=16)
    parser.add_argument("--search-limit", type=int, default=4096)
    parser.add_argument("--throughput-batch", type=int, default=64)
    parser.add_argument("--throughput-repeats", type=int, default=5)
    parser.add_argument("--caption-tokens", type=int, default=20)
    parser.add_argument(
        "--setups", nargs="+", default=None, help="only these setups (default: all)"
    )
    parser.add_argument(
        "--training", nargs="+", choices=["fine-tuned", "frozen"], default=["fine-tuned", "frozen"]
    )
    parser.add_argument(
        "--placements", nargs="+", choices=["memory", "encoder"], default=["memory", "encoder"]
    )
    parser.add_argument(
        "--time-limit-s",
        type=float,
        default=540.0,
        help="skip the remaining configurations after this long",
    )
    args = parser.parse_args(argv)

    if args.dry_run:
        args.peak_batches = [2, 4]
        args.search_start = min(args.search_start, 4)
        args.search_limit = min(args.search_limit, 64)
        args.throughput_batch = min(args.throughput_batch, 2)
        args.throughput_repeats = 1
        args.caption_tokens = min(args.caption_tokens, 4)
        args.amp = "fp32"
        backend = Backend(torch.device("cpu"), dry_run_capacity=args.dry_run_capacity)
    else:
        if not torch.cuda.is_available():
            parser.error("no CUDA device here; use --dry-run for a CPU sanity check")
        device = torch.device("cuda", torch.cuda.current_device())  # the memory cap needs an index
        total = torch.cuda.get_device_properties(device).total_memory
        fraction = min(1.0, args.card_gib * GIB / total)
        torch.cuda.set_per_process_memory_fraction(fraction, device)
        backend = Backend(device)
    out_dir = args.out or Path(os.environ.get("OUT") or course.results_dir() / "gpu_memory_check")
    path = Path(out_dir) / RESULT_NAME
    payload: dict[str, Any] = {
        "what": "training memory, largest batch and throughput (scripts/gpu_memory_check.py)",
        "dry_run": args.dry_run,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "versions": runtime.versions(),
        "machine": runtime.machine(),
        "emulated_card_gib": None if args.dry_run else args.card_gib,
        "rows": [],
        "skipped": [],
    }
    start = time.perf_counter()
    setups = _setups(args.dry_run)
    known = [setup["name"] for setup in setups]
    unknown = sorted(set(args.setups or []) - set(known))
    if unknown:
        parser.error(f"--setups {unknown}: unknown; choose from {known}")
    for setup in setups:
        if args.setups and setup["name"] not in args.setups:
            continue
        is_vit = build_variant(setup, "memory", 0.0).encoder.kind == "vit"
        for training, placement, ratio in VARIANTS:
            label = f"{setup['name']} {training} {placement} {ratio}"
            if placement == "encoder" and not is_vit:
                continue
            if training not in args.training or placement not in args.placements:
                continue
            if time.perf_counter() - start > args.time_limit_s:
                payload["skipped"].append(label)
                continue
            print(f"[gpu_memory_check] {label}", flush=True)
            row = measure_variant(setup, training, placement, ratio, backend, args)
            backend.free()  # the model and optimizer of this configuration are gone now
            row["elapsed_s"] = round(time.perf_counter() - start, 1)
            payload["rows"].append(row)
            _write(path, payload)
            print(
                f"  max batch {row['max_batch']}{' (capped)' if row['capped'] else ''}, "
                f"train {row.get('train_images_per_s', float('nan')):.1f} img/s, "
                f"caption {row.get('caption_images_per_s', float('nan')):.1f} img/s",
                flush=True,
            )
    payload["wall_time_s"] = round(time.perf_counter() - start, 1)
    _write(path, payload)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
