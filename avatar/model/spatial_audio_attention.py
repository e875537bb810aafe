"""Cross attention from many Gaussians to a handful of condition tokens (audio, eye, viewpoint, null).

Standard multi-head attention (queries q = W_q x, keys k = W_k c, values v = W_v c, per head a softmax over
the T tokens of q.k / sqrt(d), heads concatenated and projected by W_o), computed in an order that suits
N >> T: the token side is folded into the projections first,

    logits[b, n, h, t] = x[n] . (W_q,h^T k[b, t, h]) / sqrt(d) + b_q,h . k[b, t, h] / sqrt(d)
    output[b, n]       = sum_{h, t} weights[b, n, h, t] (W_o,h v[b, t, h]) + b_o

so the only per-Gaussian tensors are the [B, N, H, T] logits and the [B, N, D_out] output: nothing
[N, H, d] per head and nothing N x N.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class SpatialAudioAttention(nn.Module):
    """Per-Gaussian queries attend over per-frame condition tokens.

    Args:
        query_width: Dq, width of the per-Gaussian features
        token_width: Dc, width of the condition tokens
        output_width: Dout
        heads: number of attention heads H
        head_width: d, width of each head's queries, keys and values (default Dq / H, at least 8)
    """

    def __init__(
        self,
        query_width: int,
        token_width: int,
        output_width: int,
        heads: int = 4,
        head_width: int | None = None,
    ):
        super().__init__()
        self.heads = heads
        self.head_width = head_width if head_width is not None else max(query_width // heads, 8)
        inner = heads * self.head_width
        self.query = nn.Linear(query_width, inner)
        self.key = nn.Linear(token_width, inner)
        self.value = nn.Linear(token_width, inner)
        self.output = nn.Linear(inner, output_width)

    def forward(self, queries: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Attend.

        Args:
            queries: Tensor  # [B, N, Dq], or [N, Dq] shared by every batch item (computed once)
            tokens: Tensor  # [B, T, Dc]
        Returns:
            output: Tensor  # [B, N, Dout]
            weights: Tensor  # [B, N, H, T], summing to 1 over T
        """
        batch, count = tokens.shape[:2]
        heads, width = self.heads, self.head_width
        if queries.dim() not in (2, 3) or (queries.dim() == 3 and queries.shape[0] != batch):
            raise ValueError(f"queries must be [N, Dq] or [{batch}, N, Dq], got {list(queries.shape)}")
        n = queries.shape[-2]
        keys = self.key(tokens).view(batch, count, heads, width)
        values = self.value(tokens).view(batch, count, heads, width)
        scale = 1.0 / math.sqrt(width)
        query_weight = self.query.weight.view(heads, width, -1)  # [H, d, Dq]
        folded_keys = torch.einsum("hdq,bthd->bhtq", query_weight, keys) * scale  # [B, H, T, Dq]
        key_bias = torch.einsum("hd,bthd->bht", self.query.bias.view(heads, width), keys) * scale  # [B, H, T]
        # [N or B x N, Dq] @ [B, Dq, H * T]: one matrix product, contiguous [B, N, H, T] logits
        logits = torch.matmul(queries, folded_keys.reshape(batch, heads * count, -1).transpose(1, 2))
        logits = logits.view(batch, n, heads, count) + key_bias[:, None]
        weights = torch.softmax(logits, dim=-1)  # [B, N, H, T]
        output_weight = self.output.weight.view(-1, heads, width)  # [Dout, H, d]
        projected_values = torch.einsum("ohd,bthd->bhto", output_weight, values)  # [B, H, T, Dout]
        output = torch.bmm(
            weights.view(batch, n, heads * count), projected_values.reshape(batch, heads * count, -1)
        )
        output = output + self.output.bias
        return output, weights
