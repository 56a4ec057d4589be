"""A linear probe per token: what an encoder's tokens know before any caption is seen.

The encoder is frozen. Each of its tokens is a feature vector; a linear
classifier (one per attribute) is fitted on the tokens of some images to read
the colour, shape and size of the object under the token, and scored on the
tokens of other images. A fifth probe reads whether a token covers an object at
all (``object``). Attribute probes use object tokens only (the question "which
colour is the object here?" needs an object), and each accuracy comes with its
chance level, the share of the most frequent class among the scored tokens.
A random-initialised encoder is the baseline: its tokens already carry the
patch's mean colour, so colour is partly readable without any training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from ptlib.models.encoders import VisualEncoder
from ptlib.pretrain.dataset import PretextDataset
from ptlib.pretrain.heads import DENSE_HEADS

PROBES: tuple[str, ...] = (*DENSE_HEADS, "object")
"""What the probe reads from each token."""


@torch.no_grad()
def token_features(encoder: VisualEncoder, dataset: PretextDataset, batch_size: int = 64
                   ) -> tuple[Tensor, dict[str, Tensor]]:
    """Frozen tokens of every image, with each token's dense targets.

    Returns:
        ``(tokens (n_images * N, C) float32, {attribute: (n_images * N,) long})``.
    """
    encoder.eval()
    tokens, labels = [], {name: [] for name in DENSE_HEADS}
    for batch in DataLoader(dataset, batch_size=batch_size):
        tokens.append(encoder(batch["images"]).tokens.flatten(0, 1).float())
        for name in DENSE_HEADS:
            labels[name].append(batch[name].flatten())
    return torch.cat(tokens), {name: torch.cat(parts) for name, parts in labels.items()}


def fit_linear(features: Tensor, labels: Tensor, classes: int, *, ridge: float = 1.0
               ) -> tuple[Tensor, Tensor]:
    """A linear classifier in closed form: ridge regression onto one-hot labels.

    Least squares onto one-hot targets, predicted by the largest output, is a
    linear probe that needs one linear solve instead of an optimisation, so it is
    fast and has no learning rate or iteration count to tune.

    Args:
        features: ``(M, C)`` standardised features.
        labels: ``(M,)`` class indices.
        classes: Number of classes.
        ridge: L2 penalty on the weights (not the bias).

    Returns:
        ``(weight (classes, C), bias (classes,))``; predict ``argmax(x @ weight.T + bias)``.
    """
    x = torch.cat([features.double(), torch.ones(len(features), 1, dtype=torch.float64)], 1)
    targets = F.one_hot(labels, classes).double()
    penalty = torch.eye(x.shape[1], dtype=torch.float64) * ridge
    penalty[-1, -1] = 0.0
    solution = torch.linalg.solve(x.T @ x + penalty, x.T @ targets)  # (C + 1, classes)
    return solution[:-1].T.float(), solution[-1].float()


def linear_probe(encoder: VisualEncoder, train: PretextDataset, test: PretextDataset,
                 *, ridge: float = 1.0) -> dict[str, dict[str, float]]:
    """Probe accuracy per attribute of an encoder's frozen tokens.

    Args:
        encoder: The encoder to probe (random-initialised or pretrained).
        train: Images whose tokens fit the probes.
        test: Other images whose tokens score them.
        ridge: L2 penalty of the probes (:func:`fit_linear`).

    Returns:
        ``{probe: {"accuracy", "chance", "tokens"}}`` for ``colour``, ``shape``,
        ``size`` (object tokens) and ``object`` (all tokens: object or background).
    """
    x_train, y_train = token_features(encoder, train)
    x_test, y_test = token_features(encoder, test)
    mean, std = x_train.mean(dim=0), x_train.std(dim=0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    results: dict[str, dict[str, float]] = {}
    for name in PROBES:
        if name == "object":
            keep_train = torch.ones(len(x_train), dtype=torch.bool)
            keep_test = torch.ones(len(x_test), dtype=torch.bool)
            fit_y, test_y = (y_train["colour"] > 0).long(), (y_test["colour"] > 0).long()
        else:
            keep_train, keep_test = y_train[name] > 0, y_test[name] > 0
            fit_y, test_y = y_train[name] - 1, y_test[name] - 1
        fit_y, test_y = fit_y[keep_train], test_y[keep_test]
        classes = int(max(fit_y.max(), test_y.max())) + 1
        weight, bias = fit_linear(x_train[keep_train], fit_y, classes, ridge=ridge)
        predicted = (x_test[keep_test] @ weight.T + bias).argmax(dim=1)
        chance = torch.bincount(test_y, minlength=classes).max() / max(len(test_y), 1)
        results[name] = {"accuracy": round(float((predicted == test_y).float().mean()), 4),
                         "chance": round(float(chance), 4), "tokens": int(len(test_y))}
    return results
