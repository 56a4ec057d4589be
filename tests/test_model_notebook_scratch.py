"""The from-scratch attention and decoder layer of chapter 4 agree with ptlib.models.

The notebook's cells whose first line is ``# scratch: ...`` only define functions;
this test runs them and compares their results with the library.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ptlib.models import CaptionDecoder, MultiHeadAttention, causal_allowed

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "04_decoder.ipynb"

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def scratch() -> dict:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    namespace: dict = {}
    found = 0
    for cell in cells:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code" and source.startswith("# scratch:"):
            exec(compile(source, f"{NOTEBOOK.name} scratch cell", "exec"), namespace)
            found += 1
    assert found >= 2, f"{NOTEBOOK.name} lost its '# scratch:' cells"
    return namespace


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
