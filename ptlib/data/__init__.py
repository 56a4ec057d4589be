"""Datasets for captioning: the embedded shapes dataset, COCO, the vocabulary and batches.

The pieces, one idea per module:

* :mod:`ptlib.data.grammar`: the caption grammar of the shapes dataset (word
  lists, templates, relation rule) and its parser.
* :mod:`ptlib.data.shapes`: the shapes generator (COCO layout) and
  :func:`ensure_shapes_dataset`.
* :mod:`ptlib.data.coco`: COCO 2014/2017 and the Karpathy split; install check.
* :mod:`ptlib.data.vocab`: :func:`tokenize` (the one tokenisation rule) and
  :class:`Vocabulary`.
* :mod:`ptlib.data.images`: :func:`load_rgb` and :class:`BadImageError`.
* :mod:`ptlib.data.annotations`: checked reading of COCO caption JSON.
* :mod:`ptlib.data.transforms`: timm transforms with an explicit input size.
* :mod:`ptlib.data.datasets`: :class:`CaptionDataset` and :func:`collate_captions`.
* :mod:`ptlib.data.loaders`: :func:`build_caption_data` (profile -> vocab + datasets).
"""

from ptlib.data.annotations import AnnotationError, CaptionRecord, read_caption_annotations
from ptlib.data.datasets import CaptionBatch, CaptionDataset, CaptionItem, collate_captions
from ptlib.data.images import BadImageError, load_rgb
from ptlib.data.loaders import CaptionData, build_caption_data
from ptlib.data.shapes import ShapesConfig, ensure_shapes_dataset, generate_shapes_dataset
from ptlib.data.transforms import build_transform, denormalize
from ptlib.data.vocab import Vocabulary, tokenize
from ptlib.tokens import BOS_ID, EOS_ID, PAD_ID, UNK_ID  # re-exported: defined in ptlib.tokens

__all__ = [
    "AnnotationError",
    "BadImageError",
    "BOS_ID",
    "CaptionBatch",
    "CaptionData",
    "CaptionDataset",
    "CaptionItem",
    "CaptionRecord",
    "EOS_ID",
    "PAD_ID",
    "ShapesConfig",
    "UNK_ID",
    "Vocabulary",
    "build_caption_data",
    "build_transform",
    "collate_captions",
    "denormalize",
    "ensure_shapes_dataset",
    "generate_shapes_dataset",
    "load_rgb",
    "read_caption_annotations",
    "tokenize",
]
