"""Where and how a run runs: seeds, the device, and the environment report.

Every chapter starts with::

    from ptlib import course, runtime
    profile = course.get_profile()
    runtime.seed_everything(profile.seed)
    device = runtime.pick_device()

:func:`versions` and :func:`machine` are recorded with every stored result.
"""

from __future__ import annotations

import os
import platform
import random
import socket
from typing import Any

import numpy as np
import torch

import ptlib
from ptlib import course


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every CUDA device).

    Args:
        seed: Any non-negative integer.
        deterministic: Also ask PyTorch for deterministic kernels
            (``torch.use_deterministic_algorithms(True, warn_only=True)``) and
            disable cuDNN autotuning. Slower on GPU; CPU runs are deterministic
            for a fixed thread count without it.

    Raises:
        ValueError: If ``seed`` is negative or not an integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(preference: str | torch.device | None = "auto") -> torch.device:
    """Choose the device to run on.

    Args:
        preference: ``"auto"`` (CUDA, then Apple MPS, then CPU), or an explicit
            device such as ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``. ``None``
            means ``"auto"``.

    Returns:
        The chosen ``torch.device``.

    Raises:
        ValueError: If the device string is malformed or names an unavailable device.
    """
    if preference is None or (isinstance(preference, str) and preference.lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preference)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device {preference!r} is not a device; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {preference!r} was asked for but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {preference!r}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    elif device.type == "mps" and not _mps_available():
        raise ValueError(f"device {preference!r} was asked for but MPS is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {preference!r}: ptlib supports cpu, cuda and mps")
    return device


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    import timm

    found = {
        "python": platform.python_version(),
        "ptlib": ptlib.__version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
    }
    try:
        import torchvision

        found["torchvision"] = torchvision.__version__
    except ImportError:  # pragma: no cover - torchvision is a dependency
        found["torchvision"] = "missing"
    return found


def machine() -> dict[str, Any]:
    """A short description of the machine a result was produced on."""
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def environment_report() -> dict[str, Any]:
    """Everything the setup chapter shows: profile, device, directories, versions."""
    profile = course.get_profile()
    return {
        "profile": profile.name + (" (smoke)" if profile.smoke else ""),
        "profile_description": profile.description,
        "device": str(pick_device()),
        "data_dir": str(course.data_dir(create=False)),
        "results_dir": str(course.results_dir(create=False)),
        "checkpoint_dir": str(course.checkpoint_dir(create=False)),
        "versions": versions(),
        "machine": machine(),
    }
