"""The captioning model: encoders, projection, token pruning, decoder, generation.

Typical use::

    from ptlib.models import Captioner, config_from_run
    model = Captioner.from_config(config_from_run("paper_table1", pretrained=False))
    out = model(images, tokens)            # teacher forcing: out.logits (B, T, V)
    captions = model.generate(images, method="beam", beam_size=3).tokens
"""

from ptlib.models.captioner import Captioner, CaptionerOutput, VisualMemory
from ptlib.models.config import CaptionerConfig, config_from_run
from ptlib.models.decoder import (
    CaptionDecoder,
    DecoderLayer,
    DecoderOutput,
    KVCache,
    MultiHeadAttention,
    causal_allowed,
)
from ptlib.models.encoders import EncoderOutput, VisualEncoder, build_encoder, load_weights_file
from ptlib.models.generate import GenerationResult, beam_search, greedy_decode
from ptlib.models.memory import SavedTensors, saved_tensor_bytes
from ptlib.models.projection import VisualProjection, sincos_2d
from ptlib.models.pruning import (
    ENCODER_PRUNE_METHODS,
    PRUNE_METHODS,
    PruneResult,
    TokenPruner,
    merge_tokens,
    num_kept,
    take_tokens,
)
from ptlib.models.repruning import inference_pruning, make_pruner

__all__ = [
    "ENCODER_PRUNE_METHODS",
    "PRUNE_METHODS",
    "CaptionDecoder",
    "Captioner",
    "CaptionerConfig",
    "CaptionerOutput",
    "DecoderLayer",
    "DecoderOutput",
    "EncoderOutput",
    "GenerationResult",
    "KVCache",
    "MultiHeadAttention",
    "PruneResult",
    "SavedTensors",
    "TokenPruner",
    "VisualEncoder",
    "VisualMemory",
    "VisualProjection",
    "beam_search",
    "build_encoder",
    "causal_allowed",
    "config_from_run",
    "greedy_decode",
    "inference_pruning",
    "load_weights_file",
    "make_pruner",
    "merge_tokens",
    "num_kept",
    "saved_tensor_bytes",
    "sincos_2d",
    "take_tokens",
]
