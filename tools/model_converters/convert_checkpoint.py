#!/usr/bin/env python
"""Convert Conditional DETR checkpoints between layouts.

Reads the official repository's ``checkpoint.pth``, detrex's files (its
``converted_*`` ones and its own trained weights), Hugging Face transformers
state dicts (``pytorch_model.bin``/``model.safetensors``), MMDetection 3.x's
built-in ConditionalDETR checkpoints and this package's own, and writes this
package's layout (default) or any of the others (``--to``)::

    # official -> mmdet_conddetr (91 COCO-id class rows -> 80 classes)
    python tools/model_converters/convert_checkpoint.py \\
        ConditionalDETR_r50_epoch50.pth work_dirs/r50_50ep_official.pth \\
        --config configs/conditional_detr/r50_50ep.py

    # back to the official layout (91 rows), loadable by the official repo
    python tools/model_converters/convert_checkpoint.py \\
        work_dirs/r50_50ep_official.pth checkpoint.pth --to official

``--source auto`` (default) recognises the layout from the keys and says
which one it chose. Every source key must be consumed and every target key
filled; otherwise nothing is written and the missing and unexpected keys are
listed. With ``--config`` the result is also loaded strictly into the
config's model. Output files load with ``torch.load(weights_only=True)`` and
carry ``meta`` (source, date, config). Converting is optional: ``load_from=``
and ``tools/test.py CONFIG CKPT`` convert foreign checkpoints on the fly.

Exit status: 0 on success, 2 on a problem with the checkpoint, the config or
the output file (one message on stderr; nothing is written).
"""
import argparse
import os.path as osp
import re
import sys

from mmdet_conddetr.checkpoint import (LAYOUTS, SOURCES, checkpoint_meta,
                                       convert, detect_source,
                                       export_state_dict, extract_state_dict,
                                       read_checkpoint_file, save_checkpoint)
from mmdet_conddetr.errors import ConfigCheckError, UserFacingError

NATIVE = 'mmdet_conddetr'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert Conditional DETR checkpoints between the '
        'official, detrex, Hugging Face, MMDetection and mmdet_conddetr '
        'layouts.')
    parser.add_argument('src', help='checkpoint to read (.pth, .bin, .pkl, '
                        '.safetensors)')
    parser.add_argument('dst', help='file to write')
    parser.add_argument(
        '--source',
        default='auto',
        choices=('auto', ) + SOURCES,
        help='layout of SRC (default: recognise it from the keys)')
    parser.add_argument(
        '--to',
        default=NATIVE,
        choices=SOURCES,
        help='layout of DST (default: mmdet_conddetr)')
    parser.add_argument(
        '--num-classes',
        type=int,
        default=None,
        help='class rows of DST: 80 (COCO classes; a 91-row head is reduced '
        'by COCO category id) or 91 (category-id rows, the unused ids set to '
        'the prior). Default: 80 for mmdet_conddetr/mmdet/detrex, 91 for '
        'official/hf (or the --config model\'s number of classes)')
    parser.add_argument(
        '--config',
        default=None,
        help='config of the target model: the result is loaded into it '
        'strictly, and its name goes into meta')
    parser.add_argument(
        '--unsafe-load',
        action='store_true',
        help='read SRC with full unpickling if torch.load(weights_only=True) '
        'refuses it. Only for files you trust: unpickling can run code')
    return parser.parse_args(argv)


def _config_name(path: str) -> str:
    """``configs/conditional_detr/r50_50ep.py`` -> ``conditional_detr/
    r50_50ep.py`` (the name mmdet_conddetr::... and mim use)."""
    path = osp.normpath(path)
    parts = path.split(osp.sep)
    if 'configs' in parts:
        return '/'.join(parts[len(parts) - parts[::-1].index('configs'):])
    return path


def _guess_config(state_dict, src: str) -> str:
    """The config a converted checkpoint most likely belongs to: depth from
    the number of ``layer3`` blocks, DC5 from the source file name (the
    weights of DC5 and plain models have the same shapes)."""
    blocks = {int(m.group(1)) for k in state_dict
              for m in [re.match(r'backbone\.layer3\.(\d+)\.', k)] if m}
    depth = {6: 50, 23: 101}.get(max(blocks) + 1 if blocks else 0, 50)
    dc5 = 'dc5' in osp.basename(src).lower()
    return f'conditional_detr/{"dc5_" if dc5 else ""}r{depth}_50ep.py'


def _build_model(config: str):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import mmdet_conddetr  # noqa: F401  (registers the models)
    from mmdet_conddetr.registry import MODELS
    if not osp.isfile(config):
        raise ConfigCheckError(
            f'--config {config}: no such file. Pass the config of the model '
            'the checkpoint is for, e.g. configs/conditional_detr/'
            'r50_50ep.py, or leave --config out.')
    cfg = Config.fromfile(config)
    backbone = cfg.model.get('backbone', {})
    if isinstance(backbone, dict) and backbone.get('init_cfg'):
        backbone['init_cfg'] = None  # no ImageNet download to verify keys
    with DefaultScope.overwrite_default_scope('mmdet_conddetr'):
        return MODELS.build(cfg.model)


def run(args) -> str:
    """Convert; returns the report printed on success."""
    lines = []
    checkpoint = read_checkpoint_file(args.src, unsafe_load=args.unsafe_load)
    state_dict = extract_state_dict(checkpoint)
    lines.append(f'read {args.src}: {len(state_dict)} tensors')
    if args.source == 'auto':
        source = detect_source(state_dict)
        lines.append(f'source layout: {source} (auto-detected: '
                     f'{LAYOUTS[source].title})')
    else:
        source = args.source
        lines.append(f'source layout: {source} (given)')

    model = _build_model(args.config) if args.config else None
    model_rows = None
    if model is not None:
        target = model.state_dict()
        model_rows = int(target['bbox_head.fc_cls.weight'].shape[0])

    if args.to == NATIVE:
        rows = args.num_classes or model_rows or 80
        result = convert(
            state_dict,
            source,
            rows,
            target_keys=None if model is None else target.keys())
        output = result.state_dict
    else:
        # Keep the source's class rows until the export maps them.
        result = convert(state_dict, source, None)
        if model is not None:
            convert(result.state_dict, NATIVE, model_rows,
                    target_keys=target.keys())
        rows = args.num_classes or LAYOUTS[args.to].class_rows
        output = export_state_dict(
            result.state_dict, to=args.to, num_classes=rows, source=NATIVE)
    if result.num_classes != result.source_num_classes:
        lines.append(f'class head: {result.source_num_classes} -> '
                     f'{result.num_classes} rows (COCO category ids)')
    if args.to != NATIVE and rows != result.num_classes:
        lines.append(f'class head: {result.num_classes} -> {rows} rows '
                     '(COCO category ids)')
    if result.filled and args.to in (NATIVE, 'mmdet'):
        lines.append(f'filled {len(result.filled)} BN num_batches_tracked '
                     'counters with 0 (the source has frozen BN)')

    if model is not None:
        native = result.state_dict if args.to == NATIVE else convert(
            result.state_dict, NATIVE, model_rows).state_dict
        model.load_state_dict(native, strict=True)
        lines.append(f'verified: loads strictly into the model of '
                     f'{args.config}')
        config = _config_name(args.config)
    else:
        config = _guess_config(result.state_dict, args.src)
        lines.append(f'config (guessed, pass --config to set it): {config}')

    meta = checkpoint_meta(
        source=source, config=config, num_classes=rows,
        source_file=args.src)
    save_checkpoint(output, args.dst, meta=meta, layout=args.to)
    container = LAYOUTS[args.to].container
    what = (f"{{'{container}': ..., 'meta': ...}}"
            if container else 'a bare state dict')
    lines.append(f'wrote {args.dst}: {args.to} layout, {len(output)} '
                 f'tensors, {what}')
    return '\n'.join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except UserFacingError as error:  # checkpoint, config, output file
        print(f'error: {error}', file=sys.stderr)
        return 2
    except RuntimeError as error:  # strict load into the --config model
        print(f'error: the converted checkpoint does not fit the model of '
              f'{args.config}: {error}', file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == '__main__':
    sys.exit(main())
