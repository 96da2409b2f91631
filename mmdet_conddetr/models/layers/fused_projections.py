"""Decoder projections computed once per forward, for all layers at once.

Speed machinery only: the arithmetic is that of the per-layer linears in
:mod:`.attention` (the same sums, grouped into fewer and larger matmuls), and
the parameters stay the official per-layer ``nn.Linear`` modules, so
checkpoints load one-to-one.

* **Cross-attention memory.** The keys and values of every decoder
  cross-attention depend only on the encoder memory and its positions, so
  :func:`project_memory` computes them for all L layers with two matmuls,
  laid out per layer and head as ``[v | k_content | k_pos]``. A
  :class:`PackedMemory` hands one layer its keys ``[k_content ; k_pos]`` and
  its values as views of that buffer (no copies), and the values widened to
  ``[v | k_content]``: torch's fused CPU kernel needs values as wide as the
  keys, and the first ``d_head`` output channels are unchanged because each
  output channel depends on its own value channel only.
* **Object-query projections.** ``query_pos`` is the same for every layer,
  so the positional q/k projections of every self-attention and the first
  cross-attention's ``qpos_proj`` are one matmul
  (:func:`precompute_decoder_inputs`).
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def stacked_linear(linears: Sequence[nn.Linear]) -> Tuple[Tensor, Tensor]:
    """Weight and bias of the linears stacked along the output dimension."""
    return (torch.cat([linear.weight for linear in linears]),
            torch.cat([linear.bias for linear in linears]))


class PackedMemory(NamedTuple):
    """One cross-attention's keys and values, packed per head.

    Attributes:
        packed (Tensor): [B, Nk, H, 3 * d_head], per head
            ``[v | k_content | k_pos]`` (a slice of :func:`project_memory`).
    """
    packed: Tensor

    @property
    def head_dims(self) -> int:
        return self.packed.size(-1) // 3

    def keys(self, add_position_to_content: bool) -> Tensor:
        """Per head ``[k_content ; k_pos]``, [B, H, Nk, 2 * d_head]; with
        ``add_position_to_content`` ``[k_content + k_pos ; k_pos]``."""
        dims = self.head_dims
        if not add_position_to_content:
            return self.packed[..., dims:].transpose(1, 2)
        key_pos = self.packed[..., 2 * dims:]
        return torch.cat([self.packed[..., dims:2 * dims] + key_pos, key_pos],
                         -1).transpose(1, 2)

    def values(self) -> Tensor:
        """``v``, [B, H, Nk, d_head]."""
        return self.packed[..., :self.head_dims].transpose(1, 2)

    def widened_values(self) -> Tensor:
        """``[v | k_content]``, [B, H, Nk, 2 * d_head]; the first
        ``d_head`` output channels of attention over them are the output
        over :meth:`values`."""
        return self.packed[..., :2 * self.head_dims].transpose(1, 2)


def project_memory(attentions: Sequence[nn.Module], memory: Tensor,
                   memory_pos: Tensor) -> List[PackedMemory]:
    """Keys and values of several cross-attentions in two matmuls.

    Args:
        attentions (Sequence[nn.Module]): L cross-attentions with the same
            width and ``num_heads`` and linears ``v_proj``,
            ``kcontent_proj`` and ``kpos_proj``.
        memory (Tensor): Encoder output, [B, Nk, d].
        memory_pos (Tensor): Memory sine positions, [B, Nk, d].

    Returns:
        list[PackedMemory]: One per attention.
    """
    heads, dims = attentions[0].num_heads, memory.size(-1)
    head_dims = dims // heads
    weights, biases = [], []
    for attention in attentions:
        # Rows of v and k_content interleaved per head: [v_h | kc_h].
        weights.append(
            torch.stack([
                attention.v_proj.weight.view(heads, head_dims, dims),
                attention.kcontent_proj.weight.view(heads, head_dims, dims)
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
    packed = torch.cat([
        value_key.view(batch, length, layers, heads, 2 * head_dims),
        key_pos.view(batch, length, layers, heads, head_dims)
    ], -1)
    # unbind, not one slice per layer: its backward stacks the layers'
    # gradients into one new tensor where each slice's backward would fill a
    # zero tensor of the whole buffer.
    return [PackedMemory(layer) for layer in packed.unbind(2)]


class LayerProjections(NamedTuple):
    """What one decoder layer gets precomputed.

    Attributes:
        self_pos (Tensor): ``[Wqp p + bqp | Wkp p + bkp]`` of its
            self-attention, [B, Nq, 2d].
        cross_memory (PackedMemory): Its cross-attention's keys and values.
        cross_query_pos (Tensor, optional): ``qpos_proj(query_pos)`` of its
            cross-attention, [B, Nq, d] (first layer only).
    """
    self_pos: Tensor
    cross_memory: PackedMemory
    cross_query_pos: Optional[Tensor]


def precompute_decoder_inputs(layers: Sequence[nn.Module], query_pos: Tensor,
                              memory: Tensor,
                              memory_pos: Tensor) -> List[LayerProjections]:
    """The per-forward constants of every decoder layer, in three matmuls.

    Args:
        layers (Sequence[nn.Module]): Decoder layers with ``self_attn``
            (having ``position_linears()``) and ``cross_attn``.
        query_pos (Tensor): Object queries, [B, Nq, d].
        memory (Tensor): Encoder output, [B, Nk, d].
        memory_pos (Tensor): Memory sine positions, [B, Nk, d].

    Returns:
        list[LayerProjections]: One per layer.
    """
    dims = query_pos.size(-1)
    linears = [
        linear for layer in layers
        for linear in layer.self_attn.position_linears()
    ]
    first_cross = layers[0].cross_attn
    if first_cross.is_first:
        linears.append(first_cross.qpos_proj)
    # split, not slices: one concatenation in backward (see project_memory)
    projected = F.linear(query_pos, *stacked_linear(linears)).split(
        [2 * dims] * len(layers) + [dims] * int(first_cross.is_first), -1)
    memories = project_memory([layer.cross_attn for layer in layers], memory,
                              memory_pos)
    return [
        LayerProjections(
            self_pos=projected[index],
            cross_memory=memories[index],
            cross_query_pos=(projected[-1]
                             if layer.cross_attn.is_first else None))
        for index, layer in enumerate(layers)
    ]
