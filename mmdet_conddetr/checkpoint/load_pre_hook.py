"""On-the-fly conversion when a foreign checkpoint is loaded into our model.

:func:`foreign_checkpoint_pre_hook` is registered on every
``mmdet_conddetr.ConditionalDETR`` with
``register_load_state_dict_pre_hook``. torch runs it at the start of the
detector's own ``_load_from_state_dict``, before any submodule reads its
keys, both for ``nn.Module.load_state_dict`` and for mmengine's
``load_state_dict`` (used by ``load_from=``, ``tools/test.py CONFIG CKPT``,
``init_detector`` and ``DetInferencer``): both loaders hand each submodule
the keys of the same dict, after this hook has rewritten it in place.

A state dict in one of the foreign layouts (official, detrex, Hugging Face,
MMDetection) is replaced by its conversion, strictly checked against the
model's own keys; anything else (our own layout, or keys of no known layout,
e.g. a partial checkpoint) is left to the loader as usual.

A class head of another size is passed on unchanged, for the loader to
report. Under an mmengine runner the engine's ``CheckpointMatchHook`` has
already decided before this runs: refused (testing, resuming), or, when
fine-tuning from ``load_from``, converted with a fresh head
(:mod:`.finetune`), which this hook then sees as our own layout.
"""
from mmengine.logging import print_log

from .convert import convert
from .detect import detect_source, extract_state_dict
from ..errors import CheckpointFileError, NumClassesError
from .layouts.native import CLASS_WEIGHT, NATIVE

__all__ = ['foreign_checkpoint_pre_hook']


def foreign_checkpoint_pre_hook(module, state_dict, prefix, local_metadata,
                                strict, missing_keys, unexpected_keys,
                                error_msgs) -> None:
    """``load_state_dict`` pre-hook converting foreign layouts in place.

    Raises:
        KeyMismatchError: the checkpoint is in a foreign layout but does not
            fill the model exactly (e.g. another depth): nothing is loaded.
    """
    keys = [key for key in state_dict if key.startswith(prefix)]
    if not keys:
        return
    local = {key[len(prefix):]: state_dict[key] for key in keys}
    try:
        # mmengine passes a whole checkpoint when it has no 'state_dict'
        # entry, e.g. the official {'model': ..., 'optimizer': ...}.
        inner = extract_state_dict(local)
    except CheckpointFileError:
        return
    source = detect_source(inner, raise_error=False)
    if source is None:
        return
    if source == NATIVE:
        if set(inner) != set(local):  # ours, but inside a container
            _replace(state_dict, keys, prefix, inner)
        return

    target = module.state_dict(keep_vars=True)
    num_classes = int(target[CLASS_WEIGHT].shape[0]) \
        if CLASS_WEIGHT in target else None
    note = ''
    try:
        result = convert(inner, source, num_classes, target_keys=target)
    except NumClassesError as error:
        # e.g. COCO weights into a model for another dataset: load the head
        # as it is and let the loader report its size mismatch, as it does
        # for any checkpoint.
        result = convert(inner, source, None, target_keys=target)
        note = f' The class head was left as it is: {error}'
    result.detected = True
    _replace(state_dict, keys, prefix, result.state_dict)
    print_log(
        'mmdet_conddetr: converted the checkpoint on the fly from the '
        f'{result.describe()} (tools/model_converters/convert_checkpoint.py '
        f'does it once for all).{note}',
        logger='current')


def _replace(state_dict, keys, prefix, new) -> None:
    for key in keys:
        del state_dict[key]
    for key, value in new.items():
        state_dict[prefix + key] = value
