"""Attention modules of Conditional DETR.

All three attentions of the model run their core through
:func:`torch.nn.functional.scaled_dot_product_attention`, which gives the same
numbers as the official ``softmax(q k^T / sqrt(d_head)) v`` (the scale is
``1/sqrt`` of the per-head query width, which for the conditional
cross-attention is the concatenated ``2 * d_head``, as in the official code)
without materialising the attention matrix.

Differences from mmcv's ``MultiheadAttention`` used by MMDetection 3.3:
dropout is applied to the attention weights *and* to the output (the official
``dropout1/dropout2``), and the decoder attentions keep the content and
positional projections separate, exactly as the official layer does, so the
official weights load one-to-one.

Set ``record_attention = True`` on a :class:`ConditionalCrossAttention` to keep
its softmax weights in ``last_attention`` (used by the attention visualiser);
it is off by default and costs nothing when off.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """[B, N, H*D] -> [B, H, N, D]."""
    batch, length, width = x.shape
    return x.view(batch, length, num_heads, width // num_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """[B, H, N, D] -> [B, N, H*D]."""
    batch, heads, length, width = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * width)


def attend(q: Tensor,
           k: Tensor,
           v: Tensor,
           key_padding_mask: Optional[Tensor],
           dropout_p: float,
           return_weights: bool = False):
    """Scaled dot-product attention over heads.

    Args:
        q (Tensor): Queries, [B, H, Nq, Dqk].
        k (Tensor): Keys, [B, H, Nk, Dqk].
        v (Tensor): Values, [B, H, Nk, Dv].
        key_padding_mask (Tensor, optional): [B, Nk], True on padded keys.
        dropout_p (float): Dropout on the attention weights.
        return_weights (bool): Also return the softmax weights [B, H, Nq, Nk]
            (computed explicitly; only for inspection).

    Returns:
        Tensor | tuple[Tensor, Tensor]: Output [B, H, Nq, Dv] (and weights).
    """
    attn_mask = None
    if key_padding_mask is not None:
        attn_mask = ~key_padding_mask[:, None, None, :]
    if not return_weights:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
    logits = q @ k.transpose(-2, -1) * q.size(-1)**-0.5
    if attn_mask is not None:
        logits = logits.masked_fill(~attn_mask, float('-inf'))
    weights = logits.softmax(-1)
    return F.dropout(weights, dropout_p) @ v, weights


class EncoderSelfAttention(nn.Module):
    """DETR encoder self-attention: ``q = k = x + pos``, ``v = x``.

    Args:
        embed_dims (int): Feature width ``d``.
        num_heads (int): Number of heads.
        attn_drop (float): Dropout on the attention weights.
    """

    def __init__(self, embed_dims: int, num_heads: int, attn_drop: float):
        super().__init__()
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.in_proj = nn.Linear(embed_dims, 3 * embed_dims)
        self.out_proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x: Tensor, pos: Tensor,
                key_padding_mask: Optional[Tensor]) -> Tensor:
        """x, pos: [B, N, d]; key_padding_mask: [B, N] -> [B, N, d]."""
        dims = x.size(-1)
        weight, bias = self.in_proj.weight, self.in_proj.bias
        qk = F.linear(x + pos, weight[:2 * dims], bias[:2 * dims])
        v = F.linear(x, weight[2 * dims:], bias[2 * dims:])
        q, k = qk.split(dims, dim=-1)
        out = attend(
            split_heads(q, self.num_heads), split_heads(k, self.num_heads),
            split_heads(v, self.num_heads), key_padding_mask,
            self.attn_drop if self.training else 0.0)
        return self.out_proj(merge_heads(out))


class ConditionalSelfAttention(nn.Module):
    """Decoder self-attention with separate content and position projections.

    ``q = Wqc x + Wqp p``, ``k = Wkc x + Wkp p``, ``v = Wv x``, where ``x`` is
    the decoder embedding and ``p`` the object query (its positional part).

    Args:
        embed_dims (int): Feature width ``d``.
        num_heads (int): Number of heads.
        attn_drop (float): Dropout on the attention weights.
    """

    def __init__(self, embed_dims: int, num_heads: int, attn_drop: float):
        super().__init__()
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.qcontent_proj = nn.Linear(embed_dims, embed_dims)
        self.qpos_proj = nn.Linear(embed_dims, embed_dims)
        self.kcontent_proj = nn.Linear(embed_dims, embed_dims)
        self.kpos_proj = nn.Linear(embed_dims, embed_dims)
        self.v_proj = nn.Linear(embed_dims, embed_dims)
        self.out_proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, query: Tensor, query_pos: Tensor) -> Tensor:
        """query, query_pos: [B, Nq, d] -> [B, Nq, d]."""
        q = self.qcontent_proj(query) + self.qpos_proj(query_pos)
        k = self.kcontent_proj(query) + self.kpos_proj(query_pos)
        v = self.v_proj(query)
        out = attend(
            split_heads(q, self.num_heads), split_heads(k, self.num_heads),
            split_heads(v, self.num_heads), None,
            self.attn_drop if self.training else 0.0)
        return self.out_proj(merge_heads(out))


class ConditionalCrossAttention(nn.Module):
    """The paper's conditional cross-attention.

    Per head, the query is ``[c_q ; p_q]`` (content ‖ conditional spatial
    query ``p_q = T(f) ⊙ PE(s)`` projected) and the key is ``[c_k ; p_k]``
    (memory content ‖ memory position), so content and spatial attention
    weights add up inside one softmax over ``2 * d_head`` channels. The first
    decoder layer also adds the object query's positional projection to the
    content query and the key's positional projection to the key content, as
    the official implementation does (``is_first``).

    Args:
        embed_dims (int): Feature width ``d``.
        num_heads (int): Number of heads.
        attn_drop (float): Dropout on the attention weights.
        is_first (bool): Whether this is the first decoder layer; only that
            layer owns ``qpos_proj``.
    """

    def __init__(self, embed_dims: int, num_heads: int, attn_drop: float,
                 is_first: bool):
        super().__init__()
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.is_first = is_first
        self.record_attention = False
        self.last_attention: Optional[Tensor] = None
        self.qcontent_proj = nn.Linear(embed_dims, embed_dims)
        self.qpos_proj = nn.Linear(embed_dims, embed_dims) if is_first else None
        self.qpos_sine_proj = nn.Linear(embed_dims, embed_dims)
        self.kcontent_proj = nn.Linear(embed_dims, embed_dims)
        self.kpos_proj = nn.Linear(embed_dims, embed_dims)
        self.v_proj = nn.Linear(embed_dims, embed_dims)
        self.out_proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, query: Tensor, query_pos: Tensor,
                query_sine_embed: Tensor, memory: Tensor, memory_pos: Tensor,
                memory_mask: Optional[Tensor]) -> Tensor:
        """Attend from the queries to the encoder memory.

        Args:
            query (Tensor): Decoder embeddings, [B, Nq, d].
            query_pos (Tensor): Object queries, [B, Nq, d].
            query_sine_embed (Tensor): ``T ⊙ PE(s)``, [B, Nq, d].
            memory (Tensor): Encoder output, [B, Nk, d].
            memory_pos (Tensor): Sine positions of the memory, [B, Nk, d].
            memory_mask (Tensor, optional): [B, Nk], True on padding.

        Returns:
            Tensor: [B, Nq, d].
        """
        heads = self.num_heads
        q_content = self.qcontent_proj(query)
        k_content = self.kcontent_proj(memory)
        k_pos = self.kpos_proj(memory_pos)
        if self.is_first:
            q_content = q_content + self.qpos_proj(query_pos)
            k_content = k_content + k_pos
        q_spatial = self.qpos_sine_proj(query_sine_embed)
        q = torch.cat([split_heads(q_content, heads),
                       split_heads(q_spatial, heads)], dim=-1)
        k = torch.cat([split_heads(k_content, heads),
                       split_heads(k_pos, heads)], dim=-1)
        v = split_heads(self.v_proj(memory), heads)
        dropout_p = self.attn_drop if self.training else 0.0
        if self.record_attention:
            out, self.last_attention = attend(
                q, k, v, memory_mask, dropout_p, return_weights=True)
        else:
            out = attend(q, k, v, memory_mask, dropout_p)
        return self.out_proj(merge_heads(out))
