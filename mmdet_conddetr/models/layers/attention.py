"""Attention modules of Conditional DETR.

The attention cores compute the official ``softmax(q k^T / sqrt(d_head)) v``
(the scale is ``1/sqrt`` of the per-head query width, which for the
conditional cross-attention is the concatenated ``2 * d_head``, as in the
official code):

* without attention dropout (inference) through
  :func:`torch.nn.functional.scaled_dot_product_attention`, which does not
  materialise the attention matrix (a fused flash kernel on CPU and GPU);
* with attention dropout (training) explicitly, ``matmul -> softmax ->
  dropout -> matmul``: ``scaled_dot_product_attention`` would fall back to
  the same computation plus a few extra passes over the weights.

Differences from mmcv's ``MultiheadAttention`` used by MMDetection 3.3:
dropout is applied to the attention weights *and* to the output (the official
``dropout1/dropout2``), and the decoder attentions keep the content and
positional projections as separate parameters, exactly as the official layer
does, so the official weights load one-to-one. For speed the projections are
*run* fused (concatenated weights, one matmul), which computes the same sums:

* decoder self-attention: the content projections of q, k and v are one
  matmul, and the positional ones (``query_pos`` is the same for every layer)
  can be computed once for all layers by the decoder (``pos_proj``);
* conditional cross-attention: the keys and values depend only on the encoder
  memory and its positions, so the decoder computes them for all layers with
  two matmuls (:meth:`ConditionalCrossAttention.project_memory`) laid out per
  head as ``[v | k_content | k_pos]``, from which each layer takes its keys
  ``[k_content | k_pos]`` and values as views, without copies.

Set ``record_attention = True`` on a :class:`ConditionalCrossAttention` to keep
its softmax weights in ``last_attention`` (used by the attention visualiser);
it is off by default and costs nothing when off.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """[B, N, H*D] -> [B, H, N, D] (a view)."""
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
    if not return_weights and dropout_p == 0.0:
        attn_mask = None
        if key_padding_mask is not None:
            attn_mask = ~key_padding_mask[:, None, None, :]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    logits = torch.matmul(q * q.size(-1)**-0.5, k.transpose(-2, -1))
    if key_padding_mask is not None:
        # In place: the matmul's backward needs its inputs, not its output.
        logits.masked_fill_(key_padding_mask[:, None, None, :], float('-inf'))
    weights = logits.softmax(-1)
    dropped = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    out = torch.matmul(dropped, v)
    return (out, weights) if return_weights else out


def stacked_linear(linears: Sequence[nn.Linear]) -> Tuple[Tensor, Tensor]:
    """Weight and bias of the linears stacked along the output dimension."""
    return (torch.cat([linear.weight for linear in linears]),
            torch.cat([linear.bias for linear in linears]))


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
                [B, Nq, 2d], computed by the caller (e.g. once for all decoder
                layers).

        Returns:
            Tensor: [B, Nq, d].
        """
        dims = query.size(-1)
        if pos_proj is None:
            pos_proj = F.linear(query_pos,
                                *stacked_linear(self.position_linears()))
        qkv = F.linear(
            query,
            *stacked_linear(
                (self.qcontent_proj, self.kcontent_proj, self.v_proj)))
        q, k = (qkv[..., :2 * dims] + pos_proj).split(dims, dim=-1)
        out = attend(
            split_heads(q, self.num_heads), split_heads(k, self.num_heads),
            split_heads(qkv[..., 2 * dims:], self.num_heads), None,
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

    @staticmethod
    def project_memory(attentions: Sequence['ConditionalCrossAttention'],
                       memory: Tensor, memory_pos: Tensor) -> Tensor:
        """Keys and values of several cross-attentions in two matmuls.

        Args:
            attentions (Sequence[ConditionalCrossAttention]): L modules with
                the same width and heads (the decoder's layers).
            memory (Tensor): Encoder output, [B, Nk, d].
            memory_pos (Tensor): Memory sine positions, [B, Nk, d].

        Returns:
            Tensor: [B, Nk, L, H, 3 * d_head], per layer and head
            ``[v | k_content | k_pos]`` (without the first layer's
            ``k_content + k_pos``, which :meth:`forward` adds).
        """
        first = attentions[0]
        heads, dims = first.num_heads, memory.size(-1)
        head_dims = dims // heads
        weights, biases = [], []
        for attention in attentions:
            # Rows of v and k_content interleaved per head: [v_h | kc_h].
            weights.append(
                torch.stack([
                    attention.v_proj.weight.view(heads, head_dims, dims),
                    attention.kcontent_proj.weight.view(
                        heads, head_dims, dims)
                ], 1).view(2 * dims, dims))
            biases.append(
                torch.stack([
                    attention.v_proj.bias.view(heads, head_dims),
                    attention.kcontent_proj.bias.view(heads, head_dims)
                ], 1).view(2 * dims))
        batch, length = memory.shape[:2]
        layers = len(attentions)
        value_key = F.linear(memory, torch.cat(weights), torch.cat(biases))
        key_pos = F.linear(
            memory_pos,
            *stacked_linear([attention.kpos_proj for attention in attentions]))
        return torch.cat([
            value_key.view(batch, length, layers, heads, 2 * head_dims),
            key_pos.view(batch, length, layers, heads, head_dims)
        ], -1)

    def forward(self,
                query: Tensor,
                query_pos: Optional[Tensor],
                query_sine_embed: Tensor,
                memory: Optional[Tensor],
                memory_pos: Optional[Tensor],
                memory_mask: Optional[Tensor],
                keys_values: Optional[Tensor] = None,
                query_pos_proj: Optional[Tensor] = None) -> Tensor:
        """Attend from the queries to the encoder memory.

        Args:
            query (Tensor): Decoder embeddings, [B, Nq, d].
            query_pos (Tensor): Object queries, [B, Nq, d] (first layer only,
                unused when ``query_pos_proj`` is given).
            query_sine_embed (Tensor): ``T ⊙ PE(s)``, [B, Nq, d].
            memory (Tensor): Encoder output, [B, Nk, d] (unused when
                ``keys_values`` is given).
            memory_pos (Tensor): Sine positions of the memory, [B, Nk, d]
                (unused when ``keys_values`` is given).
            memory_mask (Tensor, optional): [B, Nk], True on padding.
            keys_values (Tensor, optional): This layer's slice of
                :meth:`project_memory`, [B, Nk, H, 3 * d_head].
            query_pos_proj (Tensor, optional): ``qpos_proj(query_pos)`` of the
                first layer, [B, Nq, d].

        Returns:
            Tensor: [B, Nq, d].
        """
        heads = self.num_heads
        batch, num_queries, dims = query.shape
        head_dims = dims // heads
        if keys_values is None:
            keys_values = self.project_memory([self], memory,
                                              memory_pos)[:, :, 0]
        key_pos = keys_values[..., 2 * head_dims:]
        q_content = self.qcontent_proj(query)
        if self.is_first:
            if query_pos_proj is None:
                query_pos_proj = self.qpos_proj(query_pos)
            q_content = q_content + query_pos_proj
            k = torch.cat(
                [keys_values[..., head_dims:2 * head_dims] + key_pos, key_pos],
                dim=-1)
        else:
            k = keys_values[..., head_dims:]
        q = torch.cat([
            q_content.view(batch, num_queries, heads, head_dims),
            self.qpos_sine_proj(query_sine_embed).view(
                batch, num_queries, heads, head_dims)
        ], -1).transpose(1, 2)
        k = k.transpose(1, 2)
        dropout_p = self.attn_drop if self.training else 0.0
        if self.record_attention:
            out, self.last_attention = attend(
                q, k, keys_values[..., :head_dims].transpose(1, 2),
                memory_mask, dropout_p, return_weights=True)
        elif dropout_p > 0:
            out = attend(q, k, keys_values[..., :head_dims].transpose(1, 2),
                         memory_mask, dropout_p)
        else:
            # The fused kernel needs values as wide as the keys: take
            # [v | k_content] and keep the first d_head output channels
            # (each output channel only depends on its own value channel).
            out = attend(q, k,
                         keys_values[..., :2 * head_dims].transpose(1, 2),
                         memory_mask, 0.0)[..., :head_dims]
        return self.out_proj(merge_heads(out))
