from __future__ import annotations

import math

import pytest
import torch

from avatar.model.spatial_audio_attention import SpatialAudioAttention


def reference_attention(module: SpatialAudioAttention, queries: torch.Tensor, tokens: torch.Tensor):
    """Textbook multi-head attention: per-head q, k, v, softmax(q k^T / sqrt(d)) v, concatenate, project."""
    batch, count = tokens.shape[:2]
    n = queries.shape[-2]
    heads, width = module.heads, module.head_width
    q = module.query(queries).view(batch, n, heads, width)
    k = module.key(tokens).view(batch, count, heads, width)
    v = module.value(tokens).view(batch, count, heads, width)
    logits = torch.einsum("bnhd,bthd->bnht", q, k) / math.sqrt(width)
    weights = torch.softmax(logits, dim=-1)
    heads_out = torch.einsum("bnht,bthd->bnhd", weights, v).reshape(batch, n, heads * width)
    return module.output(heads_out), weights


@pytest.mark.parametrize("batch,n", [(1, 1), (3, 1000)])
def test_matches_textbook_attention(batch, n):
    torch.manual_seed(0)
    module = SpatialAudioAttention(query_width=12, token_width=10, output_width=7, heads=3, head_width=5)
    queries = torch.randn(batch, n, 12)
    tokens = torch.randn(batch, 4, 10)
    output, weights = module(queries, tokens)
    expected_output, expected_weights = reference_attention(module, queries, tokens)
    assert output.shape == (batch, n, 7) and weights.shape == (batch, n, 3, 4)
    torch.testing.assert_close(weights, expected_weights, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(output, expected_output, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(batch, n, 3))


def test_shared_queries_equal_batched_queries():
    torch.manual_seed(1)
    module = SpatialAudioAttention(query_width=8, token_width=6, output_width=4, heads=2)
    shared = torch.randn(50, 8)
    tokens = torch.randn(3, 4, 6)
    out_shared, weights_shared = module(shared, tokens)
    out_batched, weights_batched = module(shared.expand(3, 50, 8), tokens)
    torch.testing.assert_close(out_shared, out_batched)
    torch.testing.assert_close(weights_shared, weights_batched)


def test_gradients_reach_queries_tokens_and_weights():
    torch.manual_seed(2)
    module = SpatialAudioAttention(query_width=8, token_width=6, output_width=4, heads=2)
    queries = torch.randn(20, 8, requires_grad=True)
    tokens = torch.randn(2, 4, 6, requires_grad=True)
    output, _ = module(queries, tokens)
    output.square().sum().backward()
    for tensor in (queries, tokens, *module.parameters()):
        assert tensor.grad is not None and float(tensor.grad.abs().sum()) > 0
