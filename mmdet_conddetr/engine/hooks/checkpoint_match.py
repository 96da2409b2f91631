"""Refuse to load a checkpoint that does not fit the model.

mmengine's runner loads ``load_from`` / ``--resume`` / ``tools/test.py``
checkpoints with ``strict=False``: weights of another architecture, or a
class head of another size, are skipped with a log warning and the run goes
on with a partly random model -- at test time it reports a near-zero mAP,
in training it silently starts (partly) from scratch.

:class:`CheckpointMatchHook` runs in ``after_load_checkpoint``, i.e. after the
file is read and *before* any weight is copied into the model. It compares
the checkpoint's state dict (converted first when it is in a foreign layout,
see :mod:`mmdet_conddetr.checkpoint`) with the model's own keys and shapes
and raises :class:`CheckpointMismatchError` -- naming what differs and how to
fix it -- unless they match exactly.

The one tolerated difference, when training starts from ``load_from``
(not resuming), is the class head (``bbox_head.fc_cls``) of another number
of classes: fine-tuning COCO weights on another dataset. The head is then
re-initialised (prior-probability bias) and one warning line says so.
Testing and resuming are strict.
The hook tells training from testing by itself, so the same config entry
(``custom_hooks=[dict(type='mmdet_conddetr.CheckpointMatchHook')]`` in the
``_base_`` files) serves ``Runner.from_cfg``, ``mim``, mmdet's tools and ours.
"""
from typing import Dict, List, Optional, Tuple

from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner import BaseLoop

from mmdet_conddetr.checkpoint import (CLASS_BIAS, CLASS_WEIGHT, NATIVE,
                                       convert, detect_source,
                                       extract_state_dict)
from mmdet_conddetr.checkpoint.finetune import (fine_tune_note,
                                                with_fresh_class_head)
from mmdet_conddetr.errors import (CheckpointError, CheckpointMismatchError,
                                   NumClassesError, format_keys)
from mmdet_conddetr.registry import HOOKS

__all__ = [
    'CheckpointMatchHook', 'CheckpointMismatchError', 'match_checkpoint'
]

_HEAD_KEYS = (CLASS_WEIGHT, CLASS_BIAS)


def _target_model(runner):
    model = runner.model
    if is_model_wrapper(model):
        model = model.module
    if isinstance(model, BaseTTAModel):
        model = model.module
    return model


def _rows(tensor) -> Optional[int]:
    return None if tensor is None else int(tensor.shape[0])


def match_checkpoint(checkpoint,
                     model,
                     strict: bool = True,
                     name: str = 'the checkpoint',
                     config: str = 'the config') -> List[str]:
    """Check that ``checkpoint`` fills ``model`` exactly.

    Returns:
        list[str]: warnings about tolerated differences (``strict=False``:
        a class head of another size, which is then re-initialised in
        ``checkpoint['state_dict']``, see :mod:`mmdet_conddetr.checkpoint.
        finetune`).

    Raises:
        CheckpointMismatchError: anything else differs.
        CheckpointError: the checkpoint holds no state dict, or a foreign
            layout that cannot be converted (message from the converter).
    """
    target = model.state_dict()
    try:
        state = extract_state_dict(checkpoint)
    except CheckpointError as error:
        raise CheckpointMismatchError(
            f'{name} cannot be loaded: {error}. Pass a checkpoint written by '
            'tools/train.py or one of the layouts '
            'tools/model_converters/convert_checkpoint.py reads.') from error
    source = detect_source(state, raise_error=False)
    model_rows = _rows(target.get(CLASS_WEIGHT))
    if source is not None and source != NATIVE:
        try:
            try:
                state = convert(
                    state, source, model_rows, target_keys=target).state_dict
            except NumClassesError:
                if strict:
                    raise
                state = convert(
                    state, source, None, target_keys=target).state_dict
        except CheckpointError as error:
            raise CheckpointMismatchError(
                f'{name} ({source} layout) does not fit the model built from '
                f'{config}: {error}\nUse the config that matches the '
                'checkpoint (depth, number of classes).') from error

    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    reshaped: List[Tuple[str, tuple, tuple]] = [
        (k, tuple(state[k].shape), tuple(target[k].shape)) for k in target
        if k in state and hasattr(state[k], 'shape')
        and tuple(state[k].shape) != tuple(target[k].shape)
    ]
    if not (missing or unexpected or reshaped):
        return []

    ckpt_rows = _rows(state.get(CLASS_WEIGHT))
    head_only = (not missing and not unexpected
                 and {k for k, _, _ in reshaped} <= set(_HEAD_KEYS)
                 and ckpt_rows is not None and model_rows is not None)
    if head_only:
        if not strict:
            # Load exactly: the head is replaced by a fresh one (the loader
            # reads checkpoint['state_dict'] when there is one).
            checkpoint['state_dict'] = with_fresh_class_head(state, target)
            return [
                fine_tune_note(name, ckpt_rows, model_rows,
                               len(state) - len(_HEAD_KEYS), source or NATIVE)
            ]
        raise CheckpointMismatchError(
            f'{name} was trained for {ckpt_rows} classes but the model built '
            f'from {config} has {model_rows} '
            f'(model.bbox_head.num_classes={model_rows}); nothing was loaded. '
            'Use the config the checkpoint was trained with, or set '
            f'model.bbox_head.num_classes={ckpt_rows} together with the '
            "dataset's classes (metainfo=dict(classes=...)).")

    parts = [
        f'{name} does not fit the model built from {config}: '
        f'{len(missing)} of the model\'s {len(target)} weights are missing '
        f'from it, {len(unexpected)} of its {len(state)} weights are not in '
        f'the model and {len(reshaped)} have another shape. Nothing was '
        'loaded.'
    ]
    if source is None:
        try:
            detect_source(state)
        except CheckpointError as error:
            if 'not a Conditional DETR checkpoint' in str(error):
                parts.append(str(error).split('. Supported')[0] + '.')
    if any('.layers.' in k for k in missing + unexpected):
        parts.append('The checkpoint and the model differ in depth (number '
                     'of encoder/decoder layers or backbone blocks).')
    if reshaped:
        parts.append('Weights of another shape (checkpoint -> model):\n' +
                     format_keys([f'{k}: {a} -> {b}'
                                  for k, a, b in reshaped], 10))
    if missing:
        parts.append('Missing from the checkpoint:\n' +
                     format_keys(missing, 10))
    if unexpected:
        parts.append('Not in the model:\n' + format_keys(unexpected, 10))
    parts.append(
        'Use the config this checkpoint was trained with (a checkpoint '
        "written by tools/train.py stores it under meta['cfg']); a "
        'checkpoint of another Conditional DETR implementation can be '
        'converted with tools/model_converters/convert_checkpoint.py.')
    raise CheckpointMismatchError('\n'.join(parts))


@HOOKS.register_module()
class CheckpointMatchHook(Hook):
    """Check every checkpoint the runner loads against the model.

    Args:
        strict (bool, optional): Refuse any difference. None (default):
            strict when testing or resuming; when training from
            ``load_from`` a class head of another size is tolerated (with a
            warning).
        checkpoint (str, optional): Name of the file for the messages
            (default: the runner's ``load_from``).
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 strict: Optional[bool] = None,
                 checkpoint: Optional[str] = None):
        self.strict = strict
        self.checkpoint = checkpoint

    def after_load_checkpoint(self, runner, checkpoint: Dict) -> None:
        resuming = bool(getattr(runner, '_resume', False))
        # Runner.train() builds its train loop before loading; test() and
        # val() leave it a config dict.
        training = isinstance(getattr(runner, '_train_loop', None), BaseLoop)
        strict = (not training) if self.strict is None else self.strict
        name = self.checkpoint or getattr(runner, '_load_from', None) or \
            'the checkpoint'
        config = getattr(runner.cfg, 'filename', None) or 'the config'
        notes = match_checkpoint(
            checkpoint,
            _target_model(runner),
            strict=strict or resuming,
            name=str(name),
            config=config)
        for note in notes:
            runner.logger.warning(note)
