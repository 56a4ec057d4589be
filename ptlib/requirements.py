"""The oldest PyTorch, torchvision and timm that ``ptlib`` works with, and why.

The course is developed and tested with the versions ``pyproject.toml`` pins (the
book's stored results come from them). Elsewhere, e.g. on Google Colab, ``ptlib``
is installed with ``--no-deps`` over the preinstalled libraries; they only need to
be at least as new as :data:`OLDEST`. Each floor is set by one API that ``ptlib``
relies on; the notebooks' Colab cell (``scripts/colab_cell.py``) installs
:func:`pip_specs` so that older versions are upgraded and newer ones are kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata


@dataclass(frozen=True)
class Requirement:
    """A library version range and the API that sets its floor.

    Attributes:
        name: The distribution name on PyPI.
        oldest: The oldest version that works (inclusive).
        below: The first version assumed to break (exclusive): the next major.
        reason: The API that sets ``oldest``.
    """

    name: str
    oldest: str
    below: str
    reason: str

    def spec(self) -> str:
        """The pip requirement, e.g. ``torch>=2.3,<3``."""
        return f"{self.name}>={self.oldest},<{self.below}"


OLDEST: tuple[Requirement, ...] = (
    Requirement("torch", "2.3", "3",
                "torch.amp.GradScaler(device_type) (ptlib.train.step) and "
                "torch.backends.mha.set_fastpath_enabled (ptlib.bench.flops; pytorch PR "
                "112212, merged January 2024), both new in 2.3; older APIs: "
                "torch.utils.flop_counter (2.1), SDPA (2.0), torch.load(weights_only=True)"),
    Requirement("torchvision", "0.18", "1",
                "the release built for torch 2.3 (its wheels pin torch exactly); ptlib "
                "itself uses no torchvision API, timm imports it"),
    Requirement("timm", "1.0.21", "2",
                "ViT and ConvNeXt built on the meta device (calculate_drop_path_rates; "
                "ptlib.bench builds the paper's encoders there): up to 1.0.20 "
                "torch.linspace(...).item() fails on meta tensors; forward_intermediates "
                "and prune_intermediate_layers exist since 1.0.3 but ptlib's encoder "
                "tests fail there"),
)
"""The floors, one API each (torch.compile and torch.nn.attention are not used)."""


def _release(version: str) -> tuple[int, ...]:
    """``"2.3.1+cu121"`` -> ``(2, 3, 1)``."""
    numbers = re.match(r"\d+(\.\d+)*", version.strip())
    if numbers is None:
        raise ValueError(f"cannot read the version {version!r}")
    return tuple(int(part) for part in numbers.group(0).split("."))


def _at_least(version: str, floor: str) -> bool:
    have, want = _release(version), _release(floor)
    width = max(len(have), len(want))
    return have + (0,) * (width - len(have)) >= want + (0,) * (width - len(want))


def pip_specs() -> list[str]:
    """The bounded requirements the Colab cell installs, e.g. ``["torch>=2.3,<3", ...]``."""
    return [requirement.spec() for requirement in OLDEST]


def unmet(installed: dict[str, str] | None = None) -> list[str]:
    """What is missing or out of range, one line each (empty when all is well).

    Args:
        installed: ``{name: version}``; default: the installed distributions.
    """
    problems = []
    for requirement in OLDEST:
        if installed is not None:
            version = installed.get(requirement.name)
        else:
            try:
                version = metadata.version(requirement.name)
            except metadata.PackageNotFoundError:
                version = None
        if version is None:
            problems.append(f"{requirement.name} is not installed; need {requirement.spec()}")
        elif not _at_least(version, requirement.oldest) or _at_least(version, requirement.below):
            problems.append(f"{requirement.name} {version} is installed; need "
                            f"{requirement.spec()} ({requirement.reason})")
    return problems
