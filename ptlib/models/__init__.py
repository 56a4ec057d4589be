"""The captioning model: encoders, projection, token pruning, decoder, generation.

Typical use::

    from ptlib.models import Captioner, config_from_run
    model = Captioner.from_config(config_from_run("paper_table1", pretrained=False))
    out = model(images, tokens)            # teacher forcing: out.logits (B, T, V)
    captions = model.generate(images, method="beam", beam_size=3).tokens
    half = reprune(model, 0.5, "merge")    # a new captioner sharing model's modules
"""

from ptlib.models.captioner import Captioner, CaptionerOutput, VisualMemory, reprune
from ptlib.models.config import CaptionerConfig, config_from_run
from ptlib.models.decoder import (
    CaptionDecoder,
    DecoderLayer,
    DecoderOutput,
    KVCache,
    MultiHeadAttention,
    causal_allowed,
)
from ptlib.models.encoders import (
    EncoderOutput,
    EncoderPruning,
    VisualEncoder,
    build_encoder,
    load_weights_file,
)
from ptlib.models.generate import GenerationResult, beam_search, greedy_decode
from ptlib.models.projection import VisualProjection, sincos_2d
from ptlib.models.pruning import (
    ENCODER_PRUNE_METHODS,
    PRUNE_METHODS,
    PruneResult,
    TokenPruner,
    TokenScorer,
    check_pruner,
    cls_attention_scores,
    merge_tokens,
    norm_scores,
    num_kept,
    pruning_methods,
    random_scores,
    select_top_k,
    take_tokens,
)

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
    "EncoderPruning",
    "GenerationResult",
    "KVCache",
    "MultiHeadAttention",
    "PruneResult",
    "TokenPruner",
    "TokenScorer",
    "VisualEncoder",
    "VisualMemory",
    "VisualProjection",
    "beam_search",
    "build_encoder",
    "causal_allowed",
    "check_pruner",
    "cls_attention_scores",
    "config_from_run",
    "greedy_decode",
    "load_weights_file",
    "merge_tokens",
    "norm_scores",
    "num_kept",
    "pruning_methods",
    "random_scores",
    "reprune",
    "select_top_k",
    "sincos_2d",
    "take_tokens",
]
