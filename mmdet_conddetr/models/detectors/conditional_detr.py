"""The Conditional DETR detector: wiring only.

Reuses mmdet's ``DETR`` for the backbone, the 1x1 input projection (the
``ChannelMapper`` neck), the padding masks, the sine positions of the image
features and the object-query embedding; only the transformer differs, so
this class builds our encoder and conditional decoder and passes the decoder's
reference points on to the head.

The weight initialisation is the official one: xavier-uniform on every
matrix of the encoder and decoder (including the reference-point and
query-scale MLPs), zero biases on the attention output projections and on the
encoder's fused input projection (PyTorch's ``MultiheadAttention`` does that
in the official code), the head's own priors.
"""
from typing import Dict, Tuple

from mmdet.models.detectors import DETR
from mmdet.models.layers import SinePositionalEncoding
from torch import Tensor, nn

from mmdet_conddetr.checkpoint import foreign_checkpoint_pre_hook
from mmdet_conddetr.registry import MODELS
from ..layers import (ConditionalDETRTransformerDecoder,
                      ConditionalDETRTransformerEncoder)
from ..layers.fast_resnet import resnet_forward, supports_fast_resnet


@MODELS.register_module()
class ConditionalDETR(DETR):
    """Conditional DETR (Meng et al., ICCV 2021).

    backbone -> 1x1 projection -> encoder -> conditional decoder -> head.
    ``encoder`` and ``decoder`` take ``num_layers`` and ``layer_cfg``
    (``embed_dims``, ``num_heads``, ``feedforward_dims``, ``dropout``); the
    other arguments are those of mmdet's ``DETR``. In ``'tensor'`` mode the
    detector returns the per-layer class logits [L, B, Q, C] and normalised
    cxcywh boxes [L, B, Q, 4].

    Args:
        fast_backbone (bool): Run a frozen-BN mmdet ``ResNet`` backbone with
            the BN folded into the convolutions, channels-last, and (CPU
            inference) ReLU and residual additions fused into the convolution
            kernels; see :mod:`..layers.fast_resnet`. Same numbers up to
            float rounding, same parameters. Backbones it does not cover run
            their own forward. Defaults to True.
        *args, **kwargs: Arguments of mmdet's ``DETR``.
    """

    def __init__(self, *args, fast_backbone: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fast_backbone = fast_backbone

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor, ...]:
        """Backbone and neck features, [B, C, H, W] (contiguous NCHW)."""
        if self.fast_backbone and supports_fast_resnet(self.backbone):
            feats = resnet_forward(self.backbone, batch_inputs)
        else:
            feats = self.backbone(batch_inputs)
        if self.with_neck:
            feats = self.neck(feats)
        # DETR.pre_transformer flattens with ``view``: back to NCHW (the
        # 1/32-scale map is small).
        return tuple(feat.contiguous() for feat in feats)

    def pre_transformer(self, img_feats, batch_data_samples=None):
        """mmdet's, with the flattened features and positions made
        contiguous [B, HW, d] once (mmdet's are transposed views), so that
        every projection of the encoder and decoder reads them as one
        matrix."""
        encoder_inputs, decoder_inputs = super().pre_transformer(
            img_feats, batch_data_samples)
        pos = encoder_inputs['feat_pos'].contiguous()
        encoder_inputs.update(
            feat=encoder_inputs['feat'].contiguous(), feat_pos=pos)
        decoder_inputs['memory_pos'] = pos
        return encoder_inputs, decoder_inputs

    def _init_layers(self) -> None:
        self.positional_encoding = SinePositionalEncoding(
            **self.positional_encoding)
        self.encoder = ConditionalDETRTransformerEncoder(**self.encoder)
        self.decoder = ConditionalDETRTransformerDecoder(**self.decoder)
        self.embed_dims = self.encoder.embed_dims
        self.query_embedding = nn.Embedding(self.num_queries, self.embed_dims)
        self.register_load_state_dict_pre_hook(foreign_checkpoint_pre_hook)
        if self.positional_encoding.num_feats * 2 != self.embed_dims:
            raise ValueError(
                'positional_encoding.num_feats must be half of embed_dims '
                f'({self.embed_dims}), got '
                f'{self.positional_encoding.num_feats}.')

    def init_weights(self) -> None:
        super().init_weights()  # xavier on every >1-dim encoder/decoder param
        for module in self.encoder.modules():
            if hasattr(module, 'in_proj'):
                nn.init.zeros_(module.in_proj.bias)
        for coder in (self.encoder, self.decoder):
            for name, param in coder.named_parameters():
                if name.endswith('out_proj.bias'):
                    nn.init.zeros_(param)

    def forward_decoder(self, query: Tensor, query_pos: Tensor, memory: Tensor,
                        memory_mask: Tensor, memory_pos: Tensor) -> Dict:
        """Run the conditional decoder.

        Args:
            query (Tensor): Zeros, [B, Q, d].
            query_pos (Tensor): Object queries, [B, Q, d].
            memory (Tensor): Encoder output, [B, HW, d].
            memory_mask (Tensor, optional): [B, HW], True on padding; None
                when no image of the batch is padded.
            memory_pos (Tensor): Sine positions, [B, HW, d].

        Returns:
            dict: ``hidden_states`` [L, B, Q, d] and ``references`` [B, Q, 2].
        """
        hidden_states, references = self.decoder(
            query=query,
            query_pos=query_pos,
            memory=memory,
            memory_pos=memory_pos,
            memory_mask=memory_mask)
        return dict(hidden_states=hidden_states, references=references)
