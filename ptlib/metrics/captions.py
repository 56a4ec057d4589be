"""Generation metrics: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D (and SPICE when it can run).

The numbers come from pycocoevalcap's own scorers (the code behind the COCO
caption leaderboard), called one by one on PTB-tokenised text, every image
scored against all of its references. ``COCOEvalCap.evaluate()`` is not used
because it builds SPICE first, and SPICE downloads Stanford CoreNLP.

What the numbers are, exactly:

* **BLEU-n** is corpus BLEU (clipped n-gram counts summed over all images,
  then the geometric mean of precisions 1..n), with the brevity penalty taken
  from each image's *closest* reference length (ties go to the shorter one).
* **METEOR** is METEOR 1.5 (``-l en -norm``) run in a Java subprocess.
* **ROUGE-L** is the mean over images of the LCS F-measure (beta = 1.2), using
  for each image the best precision and best recall over its references.
* **CIDEr-D** is pycocoevalcap's ``Cider``, which is CIDEr-D (clipped tf-idf,
  Gaussian length penalty with sigma = 6, times 10). Its IDF comes from the
  references of the images being scored, so a score depends on which images
  are scored together: a set of one image always scores 0, and an n-gram in
  every image's references carries no weight.
* **SPICE** needs Stanford CoreNLP 3.6.0, which pycocoevalcap downloads on
  first use. ptlib never downloads it: SPICE is reported as ``None`` with the
  reason under ``"unavailable"``, unless both CoreNLP jars are already in
  pycocoevalcap's ``spice/lib`` folder.

Without Java, METEOR is reported unavailable (with a warning) and captions are
tokenised with the Python rule (:func:`ptlib.metrics.tokenization.python_tokenize`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from ptlib.errors import ExternalToolError
from ptlib.metrics.tokenization import java_available, tokenize_captions

MetricName = Literal["BLEU", "METEOR", "ROUGE_L", "CIDEr", "SPICE"]

DEFAULT_METRICS: tuple[str, ...] = ("BLEU", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
"""Every metric :class:`CaptionScorer` knows, in the order results list them."""

METRIC_KEYS: dict[str, tuple[str, ...]] = {
    "BLEU": ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4"),
    "METEOR": ("METEOR",),
    "ROUGE_L": ("ROUGE-L",),
    "CIDEr": ("CIDEr-D",),
    "SPICE": ("SPICE",),
}
"""Metric name -> the keys it fills in a result."""

_METRIC_ALIASES: dict[str, str] = {
    "bleu": "BLEU",
    "meteor": "METEOR",
    "rouge_l": "ROUGE_L",
    "rouge-l": "ROUGE_L",
    "cider": "CIDEr",
    "cider-d": "CIDEr",
    "spice": "SPICE",
}

_SPICE_CORENLP_JARS: tuple[str, ...] = (
    "stanford-corenlp-3.6.0.jar",
    "stanford-corenlp-3.6.0-models.jar",
)

TokenizerChoice = Literal["auto", "ptb", "python"]


def normalise_metric_names(metrics: Iterable[str]) -> tuple[str, ...]:
    """Check metric names and return them canonical, de-duplicated, in standard order.

    Args:
        metrics: Names such as ``"BLEU"``, ``"METEOR"``, ``"ROUGE_L"`` (or
            ``"ROUGE-L"``), ``"CIDEr"`` (or ``"CIDEr-D"``), ``"SPICE"``; case
            does not matter.

    Raises:
        ValueError: An unknown name, or no names at all.
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    chosen = set()
    for name in metrics:
        canonical = _METRIC_ALIASES.get(str(name).lower())
        if canonical is None:
            raise ValueError(
                f"unknown metric {name!r} in metrics=...; choose from {', '.join(DEFAULT_METRICS)}"
            )
        chosen.add(canonical)
    if not chosen:
        raise ValueError(f"metrics=... is empty; choose from {', '.join(DEFAULT_METRICS)}")
    return tuple(name for name in DEFAULT_METRICS if name in chosen)


def spice_unavailable_reason() -> str | None:
    """Why SPICE cannot run here without a download, or ``None`` when it can."""
    if not java_available():
        return "java not found on PATH (SPICE runs in Java)"
    import pycocoevalcap.spice

    lib = Path(pycocoevalcap.spice.__file__).parent / "lib"
    missing = [name for name in _SPICE_CORENLP_JARS if not (lib / name).is_file()]
    if missing:
        return (
            f"SPICE needs Stanford CoreNLP 3.6.0 ({', '.join(missing)} missing from {lib}); "
            "pycocoevalcap would download it and ptlib never does. Copy both jars there "
            "to enable SPICE."
        )
    return None


def check_references(references: Mapping[Hashable, Sequence[str]]) -> None:
    """Raise a clear error unless ``references`` maps image ids to lists of strings.

    Raises:
        TypeError: Not a mapping, a value that is a bare string or not a list,
            or a reference that is not a string.
        ValueError: An image with no references.
    """
    if not isinstance(references, Mapping):
        raise TypeError(
            f"references must map image id -> list of caption strings, got "
            f"{type(references).__name__}"
        )
    for image_id, texts in references.items():
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError(
                f"references[{image_id!r}] must be a list of caption strings, got "
                f"{type(texts).__name__}; wrap a single caption as [caption]"
            )
        if len(texts) == 0:
            raise ValueError(f"references[{image_id!r}] is empty: every image needs a reference")
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(
                    f"references[{image_id!r}][{index}] must be a caption string, got "
                    f"{type(text).__name__}"
                )


def check_predictions(
    predictions: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]]
) -> None:
    """Raise a clear error unless every prediction is a string for an image with references.

    Raises:
        TypeError: Not a mapping, or a caption that is not a string.
        ValueError: No predictions, or a prediction for an image id without
            references (the id is named).
    """
    if not isinstance(predictions, Mapping):
        raise TypeError(
            f"predictions must map image id -> caption string, got {type(predictions).__name__}"
        )
    if len(predictions) == 0:
        raise ValueError("predictions is empty: there is nothing to score")
    for image_id, text in predictions.items():
        if not isinstance(text, str):
            raise TypeError(
                f"predictions[{image_id!r}] must be a caption string, got {type(text).__name__}"
            )
        if image_id not in references:
            raise ValueError(
                f"predictions has image id {image_id!r}, which has no references; score only "
                "images of the split whose references you passed (check the id's type too: "
                "1 and '1' differ)"
            )


class CaptionScorer:
    """Scores captions with pycocoevalcap, keeping one METEOR process between calls.

    METEOR's Java process takes several seconds to start, so score many sets
    (folds, epochs, models) with one scorer and close it when done::

        with CaptionScorer() as scorer:
            result = scorer.score(references, predictions)

    Not thread-safe.

    Args:
        metrics: Which metrics to compute (see :data:`DEFAULT_METRICS`).
        tokenizer: ``"ptb"`` (Stanford PTB, needs Java), ``"python"`` (the
            course's Python rule) or ``"auto"`` (PTB when Java is found, else
            Python with a warning).

    Attributes:
        metrics: The canonical metric names this scorer computes.
        tokenizer: ``"ptb"`` or ``"python-fallback"``: what tokenises the captions.
        unavailable: Metric name -> why it is not computed here (reported as
            ``None`` in every result).
    """

    def __init__(
        self, metrics: Iterable[str] = DEFAULT_METRICS, *, tokenizer: TokenizerChoice = "auto"
    ) -> None:
        if tokenizer not in ("auto", "ptb", "python"):
            raise ValueError(f"tokenizer={tokenizer!r}; choose 'auto', 'ptb' or 'python'")
        self.metrics = normalise_metric_names(metrics)
        has_java = java_available()
        if tokenizer == "ptb" and not has_java:
            raise RuntimeError(
                "tokenizer='ptb' needs java on PATH; install a Java runtime or use "
                "tokenizer='auto' / 'python'"
            )
        self._use_ptb = has_java and tokenizer != "python"
        self.tokenizer = "ptb" if self._use_ptb else "python-fallback"
        self.unavailable: dict[str, str] = {}
        if tokenizer == "auto" and not has_java:
            warnings.warn(
                "java not found on PATH: captions are tokenised with the Python rule instead of "
                "the Stanford PTB tokenizer (scores can differ slightly from published ones)",
                RuntimeWarning,
                stacklevel=2,
            )
        if "METEOR" in self.metrics and not has_java:
            self.unavailable["METEOR"] = "java not found on PATH (METEOR 1.5 runs in Java)"
            warnings.warn(
                "java not found on PATH: METEOR is skipped (reported as None); install a Java "
                "runtime to compute it",
                RuntimeWarning,
                stacklevel=2,
            )
        if "SPICE" in self.metrics:
            reason = spice_unavailable_reason()
            if reason is not None:
                self.unavailable["SPICE"] = reason
        self._meteor: Any = None

    # -- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        """Stop the METEOR Java process, if one was started. Safe to call twice, never blocks."""
        meteor, self._meteor = self._meteor, None
        if meteor is not None:
            meteor.close()

    def __enter__(self) -> CaptionScorer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    # -- scoring -------------------------------------------------------------

    def tokenize(self, captions: Mapping[Hashable, Sequence[str]]) -> dict[Hashable, list[str]]:
        """Tokenise image id -> captions with this scorer's tokenizer (space-joined tokens)."""
        return tokenize_captions(captions, use_ptb=self._use_ptb)

    def score(
        self, references: Mapping[Hashable, Sequence[str]], predictions: Mapping[Hashable, str]
    ) -> dict[str, Any]:
        """Score one caption per image against all of that image's references.

        Args:
            references: Image id -> its reference captions (raw text). Images
                without a prediction are ignored.
            predictions: Image id -> the generated caption (raw text). An empty
                caption is scored as empty and counted in ``n_empty_predictions``.

        Returns:
            ``{"BLEU-1", ..., "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE"}``
            (the requested ones; ``None`` where unavailable) plus
            ``"unavailable"`` (metric -> reason), ``"tokenizer"``,
            ``"n_images"`` and ``"n_empty_predictions"``.
        """
        check_references(references)
        check_predictions(predictions, references)
        scored_ids = list(predictions)
        tokenized = self.tokenize(
            {("ref", i): references[i] for i in scored_ids}
            | {("hyp", i): [predictions[i]] for i in scored_ids}
        )
        return self.score_tokenized(
            {i: tokenized[("ref", i)] for i in scored_ids},
            {i: tokenized[("hyp", i)][0] for i in scored_ids},
        )

    def score_tokenized(
        self, references: Mapping[Hashable, Sequence[str]], predictions: Mapping[Hashable, str]
    ) -> dict[str, Any]:
        """Like :meth:`score`, for captions already tokenised by :meth:`tokenize`.

        ``references`` must hold exactly the ids of ``predictions``.
        """
        if set(references) != set(predictions):
            raise ValueError("score_tokenized needs references and predictions for the same ids")
        image_ids = list(predictions)
        gts = {i: list(references[i]) for i in image_ids}
        res = {i: [predictions[i]] for i in image_ids}
        if len(image_ids) == 1 and "CIDEr" in self.metrics:
            warnings.warn(
                "CIDEr-D of a single image is always 0: its IDF comes from the scored images' "
                "references; score more images together",
                RuntimeWarning,
                stacklevel=2,
            )
        result: dict[str, Any] = {}
        for metric in self.metrics:
            if metric in self.unavailable:
                result.update(dict.fromkeys(METRIC_KEYS[metric]))
                continue
            result.update(self._compute(metric, gts, res))
        result["unavailable"] = dict(self.unavailable)
        result["tokenizer"] = self.tokenizer
        result["n_images"] = len(image_ids)
        result["n_empty_predictions"] = sum(1 for i in image_ids if not predictions[i].strip())
        return result

    def _compute(
        self, metric: str, gts: dict[Hashable, list[str]], res: dict[Hashable, list[str]]
    ) -> dict[str, float | None]:
        if metric == "BLEU":
            from pycocoevalcap.bleu.bleu import Bleu

            bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
            return {key: float(value) for key, value in zip(METRIC_KEYS["BLEU"], bleu, strict=True)}
        if metric == "METEOR":
            return {"METEOR": self._meteor_score(gts, res)}
        if metric == "ROUGE_L":
            from pycocoevalcap.rouge.rouge import Rouge

            rouge, _ = Rouge().compute_score(gts, res)
            return {"ROUGE-L": float(rouge)}
        if metric == "CIDEr":
            from pycocoevalcap.cider.cider import Cider

            if not any(text.split() for texts in gts.values() for text in texts):
                return {"CIDEr-D": 0.0}  # pycocoevalcap fails on an empty n-gram table
            cider, _ = Cider().compute_score(gts, res)
            return {"CIDEr-D": float(cider)}
        if metric == "SPICE":
            return {"SPICE": self._spice_score(gts, res)}
        raise AssertionError(f"unhandled metric {metric}")

    def _meteor_score(
        self, gts: dict[Hashable, list[str]], res: dict[Hashable, list[str]]
    ) -> float:
        from ptlib.metrics.java import MeteorProcess

        if self._meteor is None:
            self._meteor = MeteorProcess()
        # METEOR's stdio protocol separates fields with "|||": keep "|" out of every caption.
        clean_gts = {i: [_without_bars(t) for t in texts] for i, texts in gts.items()}
        clean_res = {i: [_without_bars(t) for t in texts] for i, texts in res.items()}
        try:
            score, _ = self._meteor.compute_score(clean_gts, clean_res)
        except ExternalToolError:
            self._meteor = None  # it closed itself; a later call starts a new process
            raise
        if math.isnan(score):
            raise ExternalToolError("METEOR returned NaN; report the captions that caused it")
        return float(score)

    def _spice_score(
        self, gts: dict[Hashable, list[str]], res: dict[Hashable, list[str]]
    ) -> float | None:
        try:
            from pycocoevalcap.spice.spice import Spice

            score, _ = Spice().compute_score(gts, res)
            return float(score)
        except Exception as error:  # noqa: BLE001 - SPICE must never stop an evaluation
            self.unavailable["SPICE"] = f"SPICE failed: {error!r}"
            warnings.warn(
                f"SPICE failed and is reported as None: {error!r}", RuntimeWarning, stacklevel=3
            )
            return None


def _without_bars(text: str) -> str:
    return " ".join(text.replace("|", " ").split())


def score_captions(
    references: Mapping[Hashable, Sequence[str]],
    predictions: Mapping[Hashable, str],
    *,
    metrics: Iterable[str] = DEFAULT_METRICS,
    tokenizer: TokenizerChoice = "auto",
    scorer: CaptionScorer | None = None,
) -> dict[str, Any]:
    """Score generated captions against all references of each image.

    Args:
        references: Image id -> reference captions (raw text).
        predictions: Image id -> generated caption (raw text); every id needs
            references.
        metrics: Metrics to compute when no ``scorer`` is given.
        tokenizer: ``"auto"``, ``"ptb"`` or ``"python"`` when no ``scorer`` is given.
        scorer: A :class:`CaptionScorer` to reuse (keeps METEOR's Java process
            warm); by default one is made and closed for this call.

    Returns:
        See :meth:`CaptionScorer.score`.
    """
    if scorer is not None:
        return scorer.score(references, predictions)
    with CaptionScorer(metrics, tokenizer=tokenizer) as own_scorer:
        return own_scorer.score(references, predictions)
