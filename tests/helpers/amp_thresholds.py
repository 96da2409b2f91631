"""A training step of the R50 model under emulated CUDA AMP with pushed
class logits and reference-head outputs, and the scan of the values at which
it stops being finite (issue 13).

    OMP_NUM_THREADS=1 PYTHONPATH=tests .venv/bin/python -m helpers.amp_thresholds

prints, for fp16 and bf16, the smallest |class logit| and |reference-head
output| that give a non-finite loss or gradient (loss scale 1).
"""
import contextlib
from typing import Dict, List, Optional

import torch
from builders import build_model, make_batch
from helpers.cuda_amp import CudaAutocast, emulate_mmcv_focal_loss

SIZES = ((64, 64), (64, 96))
BOXES = (torch.tensor([[4., 6., 40., 50.], [20., 10., 60., 30.]]),
         torch.tensor([[10., 8., 90., 60.]]))
LABELS = (torch.tensor([3, 17]), torch.tensor([58]))


def r50_model():
    """The R50 config's model, random weights, no dropout (deterministic)."""
    model = build_model('r50_50ep.py')
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model.train()


def _push(value: Optional[float], alternate: bool = True):
    """Forward hook giving a module the output ``value`` (signs alternating
    along the last dimension if ``alternate``) while its gradient still flows
    into the module's parameters."""

    def hook(module, args, output):
        if value is None:
            return output
        target = torch.full_like(output, value)
        if alternate:
            target[..., 1::2] *= -1
        return output + (target - output).detach()

    return hook


def training_step(model, dtype=torch.float16, logit: Optional[float] = None,
                  ref: Optional[float] = None, loss_scale: float = 1.0,
                  record: Optional[List] = None,
                  alternate: bool = True) -> Dict[str, bool]:
    """One forward/backward of ``model`` under emulated CUDA autocast.

    Args:
        dtype: autocast dtype; None runs in fp32.
        logit / ref: value pushed into the class logits / the reference
            head's output (None leaves them as they are); the signs
            alternate over classes and over (x, y).
        alternate: False pushes every class logit to ``logit`` itself.
        loss_scale: the loss is multiplied by it before ``backward``.
        record: if a list, the dtypes of the class-loss and matching-cost
            inputs and of the reference points the head gets are appended
            to it as ``(what, dtype)``.

    Returns:
        dict: ``loss`` and ``grads``: whether they are all finite.
    """
    head = model.bbox_head
    handles = [
        head.fc_cls.register_forward_hook(_push(logit, alternate)),
        model.decoder.ref_point_head.register_forward_hook(_push(ref))
    ]
    saved = head.loss_cls.forward, head.assigner.cost
    if record is not None:
        def loss_cls(pred, *args, **kwargs):
            record.append(('loss_cls', pred.dtype))
            return saved[0](pred, *args, **kwargs)

        def cost(cls_logits, boxes, *args, **kwargs):
            record.append(('cost', cls_logits.dtype))
            record.append(('cost', boxes.dtype))
            return saved[1](cls_logits, boxes, *args, **kwargs)

        head.loss_cls.forward, head.assigner.cost = loss_cls, cost
        handles.append(head.register_forward_pre_hook(
            lambda module, args: record.append(('references', args[1].dtype))))
    batch = make_batch(model, SIZES, BOXES, LABELS, training=True)
    model.zero_grad()
    amp = contextlib.ExitStack()
    if dtype is not None:
        amp.enter_context(CudaAutocast(dtype))
        amp.enter_context(emulate_mmcv_focal_loss())
    try:
        with amp:
            losses = model.loss(batch['inputs'], batch['data_samples'])
            total = sum(value.float() for value in losses.values())
        loss_finite = bool(torch.isfinite(total))
        (total * loss_scale).backward()
    except RuntimeError as error:  # e.g. no bf16 kernel
        return dict(loss=False, grads=False, error=str(error))
    finally:
        for handle in handles:
            handle.remove()
        head.loss_cls.forward, head.assigner.cost = saved
    grads = all(
        torch.isfinite(p.grad).all() for p in model.parameters()
        if p.grad is not None)
    return dict(loss=loss_finite, grads=bool(grads))


def first_failure(model, dtype, loss_scale: float = 1.0, **push):
    """The smallest |value| whose step is not finite (0.1 resolution up to
    20, then a few large values), or None. ``push``: ``what`` ('logit' or
    'ref'), ``sign`` and ``alternate``."""
    what, sign = push.pop('what'), push.pop('sign', 1.0)

    def fails(value):
        result = training_step(model, dtype, loss_scale=loss_scale,
                               **{what: sign * value}, **push)
        return not (result['loss'] and result['grads'])

    good = 0.0
    for value in [float(v) for v in range(1, 21)] + [30., 60., 1e3, 6e4]:
        if fails(value):
            fine = [good + step / 10 for step in range(1, 10)
                    if good + step / 10 < value and value <= 20]
            return next((v for v in fine if fails(v)), value) * sign
        good = value
    return None


SCANS = (
    (torch.float16, 1.0, dict(what='logit', sign=1.0, alternate=False)),
    (torch.float16, 1.0, dict(what='logit', sign=-1.0, alternate=False)),
    (torch.float16, 1.0, dict(what='ref')),
    (torch.bfloat16, 1.0, dict(what='logit', sign=1.0, alternate=False)),
    (torch.bfloat16, 1.0, dict(what='ref')),
)


def main():
    import logging

    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    torch.manual_seed(0)
    model = r50_model()
    for dtype, scale, push in SCANS:
        found = first_failure(model, dtype, scale, **dict(push))
        print(f'{str(dtype):15} loss scale {scale:>7g} {push}: first '
              f'non-finite at {found}', flush=True)


if __name__ == '__main__':
    main()
