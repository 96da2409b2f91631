"""Encoder and conditional decoder of Conditional DETR (batch first).

The decoder follows the paper (Meng et al., ICCV 2021), "Conditional
Cross-Attention": every layer is self-attention, conditional cross-attention
and FFN; the cross-attention's spatial query is conditioned on the reference
point ``s`` and on the decoder embedding (see
:class:`ConditionalDETRTransformerDecoder`).

Differences from MMDetection 3.3's ``DetrTransformerEncoder`` and
``ConditionalDetrTransformerDecoder``, all to follow the official code:

* dropout after every attention (mmdet builds its attentions with
  ``proj_drop=0``), its CPU mask drawn at half the cost (:mod:`.dropout`);
* the sine embedding of the reference points ``PE(s)`` is computed once per
  forward, not once per decoder layer (the reference points are shared by all
  layers, so it is the same tensor);
* so are the other per-forward constants of the decoder, for all layers at
  once (:mod:`.fused_projections`);
* per-layer parameter names follow the official layer, grouped into the
  attention modules, so checkpoints convert by renaming only.

The modules are built by :class:`~..detectors.ConditionalDETR` directly, not
through the registry.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.layers.transformer.utils import MLP, coordinate_to_encoding
from torch import Tensor, nn

from .attention import (ConditionalCrossAttention, ConditionalSelfAttention,
                        EncoderSelfAttention)
from .dropout import Dropout
from .fused_projections import LayerProjections, precompute_decoder_inputs


class FeedForward(nn.Module):
    """``linear2(dropout(relu(linear1(x))))``: the official FFN branch."""

    def __init__(self, embed_dims: int, feedforward_dims: int, dropout: float):
        super().__init__()
        self.linear1 = nn.Linear(embed_dims, feedforward_dims)
        self.linear2 = nn.Linear(feedforward_dims, embed_dims)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class ConditionalDETRTransformerEncoderLayer(nn.Module):
    """Post-norm DETR encoder layer with sine positions added to q and k.

    Args:
        embed_dims (int): Feature width. Defaults to 256.
        num_heads (int): Attention heads. Defaults to 8.
        feedforward_dims (int): FFN hidden width. Defaults to 2048.
        dropout (float): Dropout everywhere the official layer has it.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 feedforward_dims: int = 2048,
                 dropout: float = 0.1):
        super().__init__()
        self.self_attn = EncoderSelfAttention(embed_dims, num_heads, dropout)
        self.ffn = FeedForward(embed_dims, feedforward_dims, dropout)
        self.norm1 = nn.LayerNorm(embed_dims)
        self.norm2 = nn.LayerNorm(embed_dims)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)

    def forward(self, x: Tensor, pos: Tensor,
                key_padding_mask: Optional[Tensor]) -> Tensor:
        """x, pos: [B, N, d]; key_padding_mask: [B, N] -> [B, N, d]."""
        x = self.norm1(x + self.dropout1(self.self_attn(x, pos, key_padding_mask)))
        return self.norm2(x + self.dropout2(self.ffn(x)))


class ConditionalDETRTransformerEncoder(nn.Module):
    """Stack of post-norm encoder layers (no final norm, as official).

    Args:
        num_layers (int): Number of layers. Defaults to 6.
        layer_cfg (dict): Keyword arguments of
            :class:`ConditionalDETRTransformerEncoderLayer`.
    """

    def __init__(self, num_layers: int = 6, layer_cfg: Optional[dict] = None):
        super().__init__()
        layer_cfg = layer_cfg or {}
        self.layers = nn.ModuleList(
            ConditionalDETRTransformerEncoderLayer(**layer_cfg)
            for _ in range(num_layers))
        self.embed_dims = self.layers[0].norm1.normalized_shape[0]

    def forward(self, query: Tensor, query_pos: Tensor,
                key_padding_mask: Optional[Tensor]) -> Tensor:
        """query, query_pos: [B, N, d]; key_padding_mask: [B, N] or None."""
        for layer in self.layers:
            query = layer(query, query_pos, key_padding_mask)
        return query


class ConditionalDETRTransformerDecoderLayer(nn.Module):
    """One decoder layer of the paper: self-attention
    over the object queries, conditional cross-attention to the encoder
    memory and FFN, each followed by dropout, residual and LayerNorm
    (post-norm, as DETR).

    Args:
        embed_dims (int): Feature width. Defaults to 256.
        num_heads (int): Attention heads. Defaults to 8.
        feedforward_dims (int): FFN hidden width. Defaults to 2048.
        dropout (float): Dropout everywhere the official layer has it.
        is_first (bool): Whether this is the first decoder layer.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 feedforward_dims: int = 2048,
                 dropout: float = 0.1,
                 is_first: bool = False):
        super().__init__()
        self.self_attn = ConditionalSelfAttention(embed_dims, num_heads, dropout)
        self.cross_attn = ConditionalCrossAttention(embed_dims, num_heads,
                                                    dropout, is_first)
        self.ffn = FeedForward(embed_dims, feedforward_dims, dropout)
        self.norm1 = nn.LayerNorm(embed_dims)
        self.norm2 = nn.LayerNorm(embed_dims)
        self.norm3 = nn.LayerNorm(embed_dims)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)

    def forward(self,
                query: Tensor,
                query_pos: Optional[Tensor],
                query_sine_embed: Tensor,
                memory: Optional[Tensor],
                memory_pos: Optional[Tensor],
                memory_mask: Optional[Tensor],
                precomputed: Optional[LayerProjections] = None) -> Tensor:
        """Shapes as :meth:`ConditionalCrossAttention.forward`; returns
        [B, Nq, d]. ``precomputed`` holds this layer's projections computed
        by the decoder for all layers at once; without it the layer computes
        its own."""
        self_pos = cross_memory = cross_query_pos = None
        if precomputed is not None:
            self_pos, cross_memory, cross_query_pos = precomputed
        query = self.norm1(query + self.dropout1(
            self.self_attn(query, query_pos, self_pos)))
        attended = self.cross_attn(query, query_pos, query_sine_embed, memory,
                                   memory_pos, memory_mask, cross_memory,
                                   cross_query_pos)
        query = self.norm2(query + self.dropout2(attended))
        return self.norm3(query + self.dropout3(self.ffn(query)))


class ConditionalDETRTransformerDecoder(nn.Module):
    """The conditional decoder (the paper's "Conditional spatial query
    prediction").

    * Reference point: ``s = sigmoid(FFN(o_q))`` from the object query
      ``o_q`` (``ref_point_head``), computed once and shared by all layers,
      and its sinusoidal embedding ``p_s``.
    * Conditional spatial query of layer ``i``: ``λ_q ⊙ p_s`` with
      ``λ_q = FFN(f)`` of the previous layer's output ``f``
      (``query_scale``); the first layer uses ``λ_q = 1``, as the official
      code does.

    Every layer's output goes through the shared final LayerNorm.

    Args:
        num_layers (int): Number of layers. Defaults to 6.
        layer_cfg (dict): Keyword arguments of
            :class:`ConditionalDETRTransformerDecoderLayer`.
    """

    def __init__(self, num_layers: int = 6, layer_cfg: Optional[dict] = None):
        super().__init__()
        layer_cfg = layer_cfg or {}
        self.layers = nn.ModuleList(
            ConditionalDETRTransformerDecoderLayer(
                **layer_cfg, is_first=(index == 0))
            for index in range(num_layers))
        dims = self.layers[0].norm1.normalized_shape[0]
        self.embed_dims = dims
        self.query_scale = MLP(dims, dims, dims, 2)
        self.ref_point_head = MLP(dims, dims, 2, 2)
        self.post_norm = nn.LayerNorm(dims)

    def forward(self, query: Tensor, query_pos: Tensor, memory: Tensor,
                memory_pos: Tensor,
                memory_mask: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """Run all layers.

        Args:
            query (Tensor): Initial decoder embeddings (zeros), [B, Nq, d].
            query_pos (Tensor): Object queries ``o_q``, [B, Nq, d].
            memory (Tensor): Encoder output, [B, Nk, d].
            memory_pos (Tensor): Memory sine positions, [B, Nk, d].
            memory_mask (Tensor, optional): [B, Nk], True on padding.

        Returns:
            tuple[Tensor, Tensor]: Normalised outputs of every layer
            [L, B, Nq, d] and the fp32 reference points [B, Nq, 2] (x, y in
            0..1).
        """
        # fp32 sigmoid under autocast: in fp16 it rounds to exactly 1 above
        # ~8.3, and the head's inverse_sigmoid must see the official values.
        references = self.ref_point_head(query_pos).float().sigmoid()
        sine_embed = coordinate_to_encoding(
            references.to(query_pos.dtype), num_feats=self.embed_dims // 2)
        precomputed = precompute_decoder_inputs(self.layers, query_pos, memory,
                                                memory_pos)
        outputs: List[Tensor] = []
        for index, layer in enumerate(self.layers):
            spatial_query = sine_embed  # λ_q = 1
            if index > 0:
                spatial_query = sine_embed * self.query_scale(query)
            query = layer(query, query_pos, spatial_query, memory, memory_pos,
                          memory_mask, precomputed[index])
            outputs.append(self.post_norm(query))
        return torch.stack(outputs), references
