"""The from-scratch pieces of chapters 3 and 4 agree with ptlib.models.

Chapter 3 writes the norm scorer, the top-k selection and the token gather;
chapter 4 writes attention, the causal mask and a decoder layer. The notebooks'
cells whose first line is ``# scratch: ...`` only define functions; these tests
run them and compare their results with the library.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ptlib.models import (
    CaptionDecoder,
    MultiHeadAttention,
    TokenPruner,
    causal_allowed,
    norm_scores,
    num_kept,
    select_top_k,
    take_tokens,
)

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOK = NOTEBOOKS / "04_decoder.ipynb"
PRUNING_NOTEBOOK = NOTEBOOKS / "03_token_pruning.ipynb"

torch.set_num_threads(1)


def _scratch_cells(notebook: Path, at_least: int) -> dict:
    cells = json.loads(notebook.read_text())["cells"]
    namespace: dict = {}
    found = 0
    for cell in cells:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code" and source.startswith("# scratch:"):
            exec(compile(source, f"{notebook.name} scratch cell", "exec"), namespace)
            found += 1
    assert found >= at_least, f"{notebook.name} lost its '# scratch:' cells"
    return namespace


@pytest.fixture(scope="module")
def scratch() -> dict:
    return _scratch_cells(NOTEBOOK, 2)


@pytest.fixture(scope="module")
def pruning_scratch() -> dict:
    return _scratch_cells(PRUNING_NOTEBOOK, 1)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 0.7, 0.99])
@pytest.mark.parametrize("shape", [(2, 36, 16), (3, 144, 8), (1, 7, 5)])
def test_scratch_norm_prune_matches_token_pruner(pruning_scratch, shape, ratio):
    torch.manual_seed(0)
    tokens = torch.randn(*shape)
    ours, our_kept = pruning_scratch["scratch_norm_prune"](tokens, ratio)
    result = TokenPruner(ratio, "norm").eval()(tokens)
    assert pruning_scratch["scratch_num_kept"](shape[1], ratio) == num_kept(shape[1], ratio)
    assert our_kept.shape == (shape[0], num_kept(shape[1], ratio))
    if ratio > 0:  # ratio 0 keeps everything without scoring
        torch.testing.assert_close(pruning_scratch["scratch_norm_scores"](tokens), result.scores)
    assert torch.equal(our_kept, result.kept_indices)
    assert torch.equal(ours, result.tokens)


@pytest.mark.parametrize("k", [1, 5, 36])
def test_scratch_steps_match_the_library_primitives(pruning_scratch, k):
    torch.manual_seed(1)
    tokens = torch.randn(3, 36, 8)
    scores = norm_scores(tokens)
    torch.testing.assert_close(pruning_scratch["scratch_norm_scores"](tokens), scores)
    kept = pruning_scratch["scratch_top_k"](scores, k)
    assert torch.equal(kept, select_top_k(scores, k))
    assert torch.equal(pruning_scratch["scratch_gather"](tokens, kept), take_tokens(tokens, kept))


def test_scratch_top_k_keeps_the_highest_in_grid_order(pruning_scratch):
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7, 0.2], [3.0, 1.0, 2.0, 0.0, 4.0]])
    kept = pruning_scratch["scratch_top_k"](scores, 3)
    assert kept.tolist() == [[1, 2, 3], [0, 2, 4]]
    tokens = torch.arange(2 * 5 * 2, dtype=torch.float).reshape(2, 5, 2)
    gathered = pruning_scratch["scratch_gather"](tokens, kept)
    assert gathered[1, 2].tolist() == tokens[1, 4].tolist()


def test_scratch_multi_head_matches_ptlib(scratch):
    torch.manual_seed(0)
    attention = MultiHeadAttention(24, 3).eval()
    query, source = torch.randn(2, 5, 24), torch.randn(2, 7, 24)
    allowed = torch.rand(2, 1, 5, 7) > 0.3
    allowed[..., 0] = True
    with torch.no_grad():
        ours, ours_weights = scratch["scratch_multi_head"](query, source, attention, allowed)
        keys, values = attention.project_kv(source)
        theirs, theirs_weights = attention(query, keys, values, allowed, need_weights=True)
        fused, _ = attention(query, keys, values, allowed)  # the SDPA path
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours, fused, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours_weights, theirs_weights)


def test_scratch_causal_mask_matches_ptlib(scratch):
    for length in (1, 4, 9):
        assert torch.equal(scratch["scratch_causal_mask"](length), causal_allowed(length))


def test_scratch_decoder_layer_matches_ptlib(scratch):
    torch.manual_seed(0)
    decoder = CaptionDecoder(50, 32, 2, 4, 64, 0.1, 16).eval()
    x, memory = torch.randn(3, 6, 32), torch.randn(3, 5, 32)
    for layer in decoder.layers:
        with torch.no_grad():
            ours = scratch["scratch_decoder_layer"](x, memory, layer, scratch["scratch_causal_mask"](6))
            theirs, _ = layer(x, memory, self_allowed=causal_allowed(6))
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
