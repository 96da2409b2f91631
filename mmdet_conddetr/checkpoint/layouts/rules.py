"""Renaming rules the layouts share, written once.

Every Conditional DETR implementation has the same parameters under other
names. Two families of rules are generated here from short name tables:

* :func:`resnet_rules`: a ResNet with torchvision's names (``conv1``,
  ``bn1``, ``layer<s>.<b>.conv<i>/bn<i>``, ``downsample.0/1``), as the
  official, Hugging Face (timm), MMDetection and this package's backbones
  name it, moved from one prefix to another;
* :func:`transformer_rules`: input projection, queries, encoder, decoder and
  head, from one layout's :class:`TransformerNames` to another's.

A :class:`TransformerNames` lists a layout's module names in a fixed order
(the one of the official code, documented on each field), so that pairing
two layouts is pairing their tables position by position. Templates use the
placeholders of :mod:`..keymap` (``{n}`` layer, ``{m}`` MLP layer, ``{w}``
weight/bias).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = [
    'SELF_ATTN_PROJ', 'CROSS_ATTN_PROJ', 'TORCHVISION_RESNET',
    'TransformerNames', 'resnet_rules', 'renamed', 'transformer_rules'
]

Rule = Tuple[str, str]

#: The decoder self-attention's projections (official ``sa_<name>_proj``).
SELF_ATTN_PROJ = ('qcontent', 'qpos', 'kcontent', 'kpos', 'v')
#: The cross-attention's (official ``ca_<name>_proj``); ``qpos`` exists in
#: the first decoder layer only.
CROSS_ATTN_PROJ = SELF_ATTN_PROJ + ('qpos_sine', )

#: A torchvision-named ResNet's parameters, relative to its prefix.
TORCHVISION_RESNET = (
    'conv1.weight', 'bn1.{bn}', 'layer{s}.{b}.conv{i}.weight',
    'layer{s}.{b}.bn{i}.{bn}', 'layer{s}.{b}.downsample.0.weight',
    'layer{s}.{b}.downsample.1.{bn}')


def _join(prefix: str, name: str) -> str:
    return f'{prefix}.{name}' if prefix else name


def resnet_rules(src: str, dst: str) -> List[Rule]:
    """A torchvision-named ResNet under prefix ``src`` -> under ``dst``."""
    return [(_join(src, name), _join(dst, name))
            for name in TORCHVISION_RESNET]


def renamed(src_names: Sequence[Optional[str]],
            dst_names: Sequence[Optional[str]],
            src: str = '',
            dst: str = '',
            suffix: str = '.{w}') -> List[Rule]:
    """Pair two aligned tuples of module names (None: no counterpart, the
    layout maps it on its own), each under its prefix, with ``suffix``."""
    if len(src_names) != len(dst_names):
        raise ValueError(f'{src_names} and {dst_names} are not aligned')
    return [(_join(src, a) + suffix, _join(dst, b) + suffix)
            for a, b in zip(src_names, dst_names)
            if a is not None and b is not None]


@dataclass(frozen=True)
class TransformerNames:
    """One layout's names of everything but the backbone.

    Attributes:
        top (tuple): Modules with ``weight``/``bias``, in this order: input
            projection, class head, box MLP layer ``{m}``, decoder final
            norm, ``query_scale`` layer ``{m}``, ``ref_point_head`` layer
            ``{m}``.
        query (str): The query embedding's weight.
        encoder_layer (str): Prefix of encoder layer ``{n}``.
        in_proj (str): The encoder self-attention's fused q|k|v projection,
            with ``{w}`` (``self_attn.in_proj_{w}`` for
            ``nn.MultiheadAttention``).
        encoder (tuple): In an encoder layer: self-attention output
            projection, FFN first and second linear, first and second norm.
        decoder_layer (str): Prefix of decoder layer ``{n}``.
        projections (tuple[str, str]): Templates of the self- and
            cross-attention projections, ``{}`` standing for the name.
        proj_names (dict): Official short name (:data:`CROSS_ATTN_PROJ`) ->
            this layout's name; default ``<name>_proj``.
        decoder (tuple): In a decoder layer: self- and cross-attention output
            projections, FFN first and second linear, norms 1, 2, 3.
    """
    top: Tuple[Optional[str], ...]
    query: str
    encoder_layer: str
    in_proj: str
    encoder: Tuple[str, ...]
    decoder_layer: str
    projections: Tuple[str, str]
    decoder: Tuple[str, ...]
    proj_names: Dict[str, str] = field(default_factory=dict)

    def projection(self, which: int, name: str) -> str:
        """Decoder-layer-relative name of projection ``name`` of the
        self- (``which=0``) or cross- (1) attention."""
        local = self.proj_names.get(name, f'{name}_proj')
        return self.projections[which].format(local)


def transformer_rules(src: TransformerNames,
                      dst: TransformerNames) -> List[Rule]:
    """Rules renaming everything but the backbone from ``src`` to ``dst``."""
    rules = renamed(src.top, dst.top)
    rules.append((src.query, dst.query))
    enc_src, enc_dst = src.encoder_layer, dst.encoder_layer
    rules.append((_join(enc_src, src.in_proj), _join(enc_dst, dst.in_proj)))
    rules += renamed(src.encoder, dst.encoder, enc_src, enc_dst)
    dec_src, dec_dst = src.decoder_layer, dst.decoder_layer
    for which, names in enumerate((SELF_ATTN_PROJ, CROSS_ATTN_PROJ)):
        rules += renamed([src.projection(which, n) for n in names],
                         [dst.projection(which, n) for n in names], dec_src,
                         dec_dst)
    rules += renamed(src.decoder, dst.decoder, dec_src, dec_dst)
    return rules


#: The official code's names (the hub every layout is paired with).
OFFICIAL_NAMES = TransformerNames(
    top=('input_proj', 'class_embed', 'bbox_embed.layers.{m}',
         'transformer.decoder.norm',
         'transformer.decoder.query_scale.layers.{m}',
         'transformer.decoder.ref_point_head.layers.{m}'),
    query='query_embed.weight',
    encoder_layer='transformer.encoder.layers.{n}',
    in_proj='self_attn.in_proj_{w}',
    encoder=('self_attn.out_proj', 'linear1', 'linear2', 'norm1', 'norm2'),
    decoder_layer='transformer.decoder.layers.{n}',
    projections=('sa_{}', 'ca_{}'),
    decoder=('self_attn.out_proj', 'cross_attn.out_proj', 'linear1',
             'linear2', 'norm1', 'norm2', 'norm3'))

#: This package's names.
NATIVE_NAMES = TransformerNames(
    top=('neck.convs.0.conv', 'bbox_head.fc_cls',
         'bbox_head.fc_reg.layers.{m}', 'decoder.post_norm',
         'decoder.query_scale.layers.{m}',
         'decoder.ref_point_head.layers.{m}'),
    query='query_embedding.weight',
    encoder_layer='encoder.layers.{n}',
    in_proj='self_attn.in_proj.{w}',
    encoder=('self_attn.out_proj', 'ffn.linear1', 'ffn.linear2', 'norm1',
             'norm2'),
    decoder_layer='decoder.layers.{n}',
    projections=('self_attn.{}', 'cross_attn.{}'),
    decoder=('self_attn.out_proj', 'cross_attn.out_proj', 'ffn.linear1',
             'ffn.linear2', 'norm1', 'norm2', 'norm3'))
