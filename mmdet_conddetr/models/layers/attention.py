"""Attention modules of Conditional DETR (Meng et al., ICCV 2021).

The paper's contribution is :class:`ConditionalCrossAttention`; the two
self-attentions are DETR's. Quoted section names are the paper's.

Differences from mmcv's ``MultiheadAttention`` used by MMDetection 3.3:
dropout is applied to the attention weights *and* to the output (the official
``dropout1/dropout2``), and the decoder attentions keep the content and
positional projections as separate parameters, exactly as the official layer
does, so the official weights load one-to-one.

Kept out of this file, so that it reads as the paper: which kernel computes
``softmax(q k^T / sqrt(D)) v`` (:mod:`.attention_core`), and the projections
the decoder computes once for all layers (:mod:`.fused_projections`), which
the modules here accept precomputed or compute themselves.

Set ``record_attention = True`` on a :class:`ConditionalCrossAttention` to keep
its softmax weights in ``last_attention`` (used by the attention visualiser);
it is off by default and costs nothing when off.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention_core import (EXPLICIT, attend, explicit_attention,
                             fused_attention, merge_heads, select_path,
                             split_heads)
from .fused_projections import PackedMemory, project_memory, stacked_linear


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

    def position_linears(self) -> Tuple[nn.Linear, nn.Linear]:
        """The projections of ``query_pos``, in the order of ``pos_proj``."""
        return self.qpos_proj, self.kpos_proj

    def forward(self,
                query: Tensor,
                query_pos: Optional[Tensor],
                pos_proj: Optional[Tensor] = None) -> Tensor:
        """Self-attention of the decoder embeddings.

        Args:
            query (Tensor): Decoder embeddings, [B, Nq, d].
            query_pos (Tensor): Object queries, [B, Nq, d]; unused when
                ``pos_proj`` is given.
            pos_proj (Tensor, optional): ``[Wqp p + bqp | Wkp p + bkp]``,
                [B, Nq, 2d], precomputed for all layers.

        Returns:
            Tensor: [B, Nq, d].
        """
        dims = query.size(-1)
        if pos_proj is None:
            pos_proj = F.linear(query_pos,
                                *stacked_linear(self.position_linears()))
        # q, k and v content projections in one matmul.
        qkv = F.linear(
            query,
            *stacked_linear(
                (self.qcontent_proj, self.kcontent_proj, self.v_proj)))
        # split, not slices: backward concatenates the two gradients once
        # rather than zero-filling a [B, Nq, 3d] tensor per slice.
        qk_content, v = qkv.split([2 * dims, dims], dim=-1)
        q, k = (qk_content + pos_proj).split(dims, dim=-1)
        out = attend(
            split_heads(q, self.num_heads), split_heads(k, self.num_heads),
            split_heads(v, self.num_heads), None,
            self.attn_drop if self.training else 0.0)
        return self.out_proj(merge_heads(out))


def concat_per_head(a: Tensor, b: Tensor, num_heads: int) -> Tensor:
    """Per head ``[a_h ; b_h]``: [B, N, H*D] twice -> [B, H, N, 2D]."""
    batch, length, width = a.shape
    return torch.cat([
        a.view(batch, length, num_heads, width // num_heads),
        b.view(batch, length, num_heads, width // num_heads)
    ], -1).transpose(1, 2)


class ConditionalCrossAttention(nn.Module):
    """The paper's conditional cross-attention ("Conditional
    Cross-Attention").

    DETR's cross-attention adds content and position before the dot product,
    ``(c_q + p_q)^T (c_k + p_k)``, four terms once expanded ("DETR Decoder
    Cross-Attention"). Here,
    per head, the query is the concatenation ``[c_q ; p_q]`` and the key
    ``[c_k ; p_k]``, so the attention logit is

        ``c_q^T c_k + p_q^T p_k``

    (content attention plus spatial attention, summed inside one softmax
    over the concatenated ``2 * d_head`` channels, scaled by
    ``1 / sqrt(2 * d_head)``); the values are the memory content ``v``.

    * ``c_q = Wqc f``: content query, from the decoder embedding ``f``
      after self-attention;
    * ``p_q = Wqs (λ_q ⊙ p_s)``: the conditional spatial query ("Conditional
      spatial query prediction"): ``p_s`` is the sinusoidal embedding of the
      reference point ``s`` and ``λ_q = FFN(f)`` is predicted by the decoder
      (:class:`~.transformer.ConditionalDETRTransformerDecoder`), which
      passes ``λ_q ⊙ p_s`` in as ``query_sine_embed``; ``Wqs`` is the
      official per-layer projection ``qpos_sine_proj``;
    * ``c_k = Wkc m``, ``p_k = Wkp PE(m)``, ``v = Wv m`` for the encoder
      memory ``m`` and its sine positions ``PE(m)``.

    As in the official code and not in the paper, the first decoder layer
    (``is_first``) also adds the object query's projection ``Wqp o_q`` to
    ``c_q`` and ``p_k`` to ``c_k``: ``[c_q + Wqp o_q ; p_q]``,
    ``[c_k + p_k ; p_k]``.

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

    def forward(self,
                query: Tensor,
                query_pos: Optional[Tensor],
                query_sine_embed: Tensor,
                memory: Optional[Tensor],
                memory_pos: Optional[Tensor],
                memory_mask: Optional[Tensor],
                packed_memory: Optional[PackedMemory] = None,
                query_pos_proj: Optional[Tensor] = None) -> Tensor:
        """Attend from the object queries to the encoder memory.

        Args:
            query (Tensor): Decoder embeddings ``f``, [B, Nq, d].
            query_pos (Tensor): Object queries ``o_q``, [B, Nq, d] (first
                layer only; unused when ``query_pos_proj`` is given).
            query_sine_embed (Tensor): ``λ_q ⊙ p_s``, [B, Nq, d].
            memory (Tensor): Encoder output, [B, Nk, d] (unused when
                ``packed_memory`` is given).
            memory_pos (Tensor): Sine positions of the memory, [B, Nk, d]
                (unused when ``packed_memory`` is given).
            memory_mask (Tensor, optional): [B, Nk], True on padding.
            packed_memory (PackedMemory, optional): This layer's keys and
                values, precomputed (:func:`~.fused_projections.
                project_memory`).
            query_pos_proj (Tensor, optional): ``qpos_proj(query_pos)``,
                precomputed, [B, Nq, d].

        Returns:
            Tensor: [B, Nq, d].
        """
        if packed_memory is None:
            packed_memory = project_memory([self], memory, memory_pos)[0]
        content_query = self.qcontent_proj(query)
        if self.is_first:
            if query_pos_proj is None:
                query_pos_proj = self.qpos_proj(query_pos)
            content_query = content_query + query_pos_proj
        spatial_query = self.qpos_sine_proj(query_sine_embed)
        q = concat_per_head(content_query, spatial_query, self.num_heads)
        k = packed_memory.keys(add_position_to_content=self.is_first)
        out = self._attend(q, k, packed_memory, memory_mask)
        return self.out_proj(merge_heads(out))

    def _attend(self, q: Tensor, k: Tensor, packed_memory: PackedMemory,
                memory_mask: Optional[Tensor]) -> Tensor:
        """``softmax(q k^T / sqrt(2 d_head)) v`` -> [B, H, Nq, d_head], by
        one of three paths: recording the weights, with attention dropout
        (explicit or fused, by device), fused without dropout."""
        dropout_p = self.attn_drop if self.training else 0.0
        values = packed_memory.values()
        if self.record_attention:
            out, self.last_attention = explicit_attention(
                q, k, values, memory_mask, dropout_p, return_weights=True)
            return out
        if select_path(q, k, values, memory_mask is not None, dropout_p,
                       False) == EXPLICIT:
            return explicit_attention(q, k, values, memory_mask, dropout_p)
        if dropout_p > 0:
            return fused_attention(q, k, values, memory_mask, dropout_p)
        return fused_attention(q, k, packed_memory.widened_values(),
                               memory_mask, 0.0)[..., :packed_memory.head_dims]
