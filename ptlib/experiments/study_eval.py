"""Score one trained captioner under one pruning setting: one cell of the pruning study.

:class:`HeldOutSplit` loads a held-out split once (images, references tokenised
once, ground-truth objects and the object area under each token cell);
:func:`score_pruning` then captions it with the model re-pruned by
:func:`ptlib.models.reprune` and returns CIDEr-D and BLEU-4 (against all
references), the correctness metrics and kept-object recall.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ptlib.data.datasets import CaptionItem
from ptlib.data.vocab import Vocabulary
from ptlib.metrics.captions import CaptionScorer
from ptlib.metrics.correctness import SceneTruth, load_ground_truth, score_correctness
from ptlib.metrics.kept_objects import cell_object_area, kept_object_recall
from ptlib.models import Captioner, reprune
from ptlib.train.captioning import caption_split
from ptlib.train.run import build_run_data, instances_path

STUDY_METRICS: tuple[str, ...] = ("BLEU", "CIDEr")
"""The n-gram metrics of the study (METEOR and ROUGE-L are in the chapter-6 tables)."""


@dataclass
class HeldOutSplit:
    """A held-out split in memory, ready to be captioned many times.

    Attributes:
        name: Split name (``"test"``, ``"compositional"``).
        items: Its ``n`` dataset items (normalised images and references), in order.
        references: Image id -> reference captions (raw text).
        references_tokenized: The same, tokenised once by the scorer.
        truth: Image id -> ground-truth objects.
    """

    name: str
    items: list[CaptionItem]
    references: dict[int, list[str]]
    references_tokenized: dict[int, list[str]]
    truth: dict[int, SceneTruth]

    @property
    def image_ids(self) -> list[int]:
        """The ``n`` COCO image ids, in order."""
        return [int(item.image_id) for item in self.items]

    @classmethod
    def load(
        cls, data_section: dict[str, Any], split: str, vocab: Vocabulary, scorer: CaptionScorer,
        max_images: int = 0,
    ) -> HeldOutSplit:
        """Load ``split`` of the shapes dataset a run config's ``data`` section describes.

        Args:
            data_section: The run config's ``data`` section (the dataset is generated
                if missing).
            split: A held-out split.
            vocab: The model's vocabulary.
            scorer: Tokenises the references.
            max_images: Use only the first this many images (0 = all).

        Raises:
            ValueError: If the dataset has no ground-truth objects (not shapes).
        """
        data = build_run_data(data_section, splits=(split,), vocab=vocab)
        instances = instances_path(data, split)
        if instances is None:
            raise ValueError(f"the pruning study needs the shapes dataset, got {data.name!r}")
        dataset = data.datasets[split]
        count = len(dataset) if not max_images else min(max_images, len(dataset))
        items = [dataset[i] for i in range(count)]
        references = {int(item.image_id): list(item.references) for item in items}
        return cls(
            name=split,
            items=items,
            references=references,
            references_tokenized=scorer.tokenize(references),
            truth=load_ground_truth(instances),
        )


@torch.no_grad()
def score_pruning(
    model: Captioner,
    vocab: Vocabulary,
    split: HeldOutSplit,
    scorer: CaptionScorer,
    *,
    ratio: float,
    method: str | None = None,
    prune_at: str | None = None,
    batch_size: int = 100,
) -> dict[str, Any]:
    """Caption a split with the given pruning (greedy) and score it.

    Args:
        model: A trained captioner (its own pruner is restored afterwards).
        vocab: Its vocabulary.
        split: From :meth:`HeldOutSplit.load`.
        scorer: A :class:`CaptionScorer` for :data:`STUDY_METRICS`.
        ratio: Fraction of visual tokens removed at inference.
        method: Pruning method (default: the model's own).
        prune_at: ``"memory"`` or ``"encoder"`` (default: the model's own).
        batch_size: Images per generation batch.

    Returns:
        ``tokens_kept`` (visual tokens the decoder attends to), ``cider``,
        ``bleu4``, ``exact_set`` (strict) and ``exact_set_lenient``,
        ``shape/colour/size/count_accuracy``,
        ``hallucination_rate``, ``repetition_rate``, ``relation_accuracy``, ``n_unparseable``, ``kept_object_recall`` (mean
        over images with objects) and ``n_images``.
    """
    model.eval()
    predictions: dict[int, str] = {}
    recalls: list[float] = []
    grid = model.encoder.grid  # the grid spans the whole image
    pruned = reprune(model, ratio, method, prune_at)
    tokens_kept = pruned.num_memory_tokens
    for batch in caption_split(pruned, split.items, vocab, batch_size=batch_size):
        predictions.update(zip(batch.image_ids, batch.captions, strict=True))
        for image_id, kept in zip(batch.image_ids, batch.kept_indices.numpy(), strict=True):
            recall = kept_object_recall(cell_object_area(split.truth[image_id], grid), kept)
            if recall is not None:
                recalls.append(recall)
    hypotheses = scorer.tokenize({i: [c] for i, c in predictions.items()})
    ngram = scorer.score_tokenized(
        {i: split.references_tokenized[i] for i in predictions},
        {i: hypotheses[i][0] for i in predictions},
    )
    correct = score_correctness(predictions, {i: split.truth[i] for i in predictions})
    attributes = correct["attribute_accuracy"]
    return {
        "tokens_kept": int(tokens_kept),
        "cider": ngram["CIDEr-D"],
        "bleu4": ngram["BLEU-4"],
        "exact_set": correct["exact_set_accuracy"],  # strict: no kind named twice
        "exact_set_lenient": correct["exact_set_accuracy_lenient"],
        "shape_accuracy": attributes.get("shape"),
        "colour_accuracy": attributes.get("colour"),
        "size_accuracy": attributes.get("size"),
        "count_accuracy": attributes.get("count"),
        "hallucination_rate": correct["hallucination_rate"],
        "repetition_rate": correct["repetition_rate"],
        "relation_accuracy": correct["relation_accuracy"],
        "n_unparseable": correct["n_unparseable"],
        "kept_object_recall": float(np.mean(recalls)) if recalls else None,
        "n_images": len(predictions),
    }

