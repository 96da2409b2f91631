"""Stop (or skip the step) when a loss becomes NaN or infinite.

Without this hook a NaN loss is back-propagated and stepped into the
weights; the next forward then fails inside the Hungarian matcher
(``FloatingPointError`` from our assigner, or scipy's "cost matrix contains
invalid numeric entries") and every later checkpoint holds NaN weights.

:class:`NonFiniteLossHook` checks every loss term after the forward pass and
*before* the backward pass and the optimizer step, so the weights are never
touched by a non-finite loss:

* ``action='raise'`` (default): stop with
  :class:`~mmdet_conddetr.errors.NonFiniteLossError`
  naming the loss term(s), the iteration, the images of the batch and the
  checkpoint to resume from;
* ``action='skip'``: drop that batch (no backward, no optimizer step, and
  the batch-norm statistics it changed are restored), log a warning and go
  on; after ``max_consecutive_skips`` skipped steps in a row
  it stops as above, since training has then diverged.

A ``FloatingPointError`` raised in the forward pass (non-finite predictions
reaching the matcher) is handled the same way.

In distributed training all ranks agree on every decision: one tiny
``all_reduce`` per iteration (with the host sync that reads it, the hook's
only one), reached by every rank whether its losses were computed or its
forward pass stopped at the matcher (the head all-reduces its box count
*before* matching, so the collectives before that point pair up too). When
a step is bad, every rank gathers what each rank saw (``all_gather_object``,
on this failure path only), so all of them log the same warning or stop with
the same message, naming the rank(s), the loss terms or the predictions, and
the images.

Enable skipping with ``custom_hooks = [dict(type='NonFiniteLossHook',
action='skip')]``. ``tools/train.py`` adds ``NonFiniteLossHook()`` to configs
that have none.
"""
import os.path as osp
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as torch_dist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop

from mmdet_conddetr.registry import HOOKS
from mmdet_conddetr.errors import NonFiniteLossError

__all__ = ['NonFiniteLossHook']


class _NonFiniteStep(Exception):
    """Raised inside ``parse_losses`` once every rank knows the step is bad;
    ``terms``: this rank's non-finite loss terms (empty if none)."""

    def __init__(self, terms: Dict[str, float]):
        super().__init__(terms)
        self.terms = terms


# What one rank saw in a bad step: its non-finite loss terms, or the error
# of its forward pass, and the images of its batch.
Report = Dict[str, object]


def _is_distributed() -> bool:
    return (torch_dist.is_available() and torch_dist.is_initialized()
            and torch_dist.get_world_size() > 1)


def _any_rank(flag: torch.Tensor) -> bool:
    """True if ``flag`` (a one-element tensor, on any device) is set on
    any rank: one all_reduce, then one host sync to read it."""
    if _is_distributed():
        device = 'cpu'
        if torch_dist.get_backend() == 'nccl':
            device = torch.device('cuda', torch.cuda.current_device())
        flag = flag.float().reshape(1).to(device)
        torch_dist.all_reduce(flag, op=torch_dist.ReduceOp.MAX)
    return bool(flag.item())


def _gather(report: Optional[Report]) -> List[Tuple[int, Report]]:
    """(rank, report) of every rank that saw a problem; all ranks call it
    together, after :func:`_any_rank` said the step is bad."""
    if not _is_distributed():
        return [(0, report)] if report else []
    reports: List[Optional[Report]] = [None] * torch_dist.get_world_size()
    torch_dist.all_gather_object(reports, report)
    return [(rank, r) for rank, r in enumerate(reports) if r]


def _rank() -> int:
    return torch_dist.get_rank() if _is_distributed() else 0


def _snapshot_buffers(model) -> Dict[str, torch.Tensor]:
    return {
        name: buf.detach().clone()
        for name, buf in model.named_buffers()
        if buf.is_floating_point() or name.endswith('num_batches_tracked')
    }


def _restore_buffers(model, saved: Optional[Dict[str, torch.Tensor]]) -> None:
    if not saved:
        return
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name in saved:
                buf.copy_(saved[name])


def _format(terms: Dict[str, float]) -> str:
    return ', '.join(f'{name}={value}' for name, value in terms.items())


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Guard the optimizer step against NaN/inf losses.

    Args:
        action (str): ``'raise'`` to stop training, ``'skip'`` to skip the
            step. Defaults to ``'raise'``.
        max_consecutive_skips (int): With ``action='skip'``, stop once this
            many steps in a row were skipped. Defaults to 20.
    """

    priority = 'VERY_HIGH'

    def __init__(self, action: str = 'raise', max_consecutive_skips: int = 20):
        if action not in ('raise', 'skip'):
            raise ValueError("NonFiniteLossHook: action must be 'raise' or "
                             f"'skip', got {action!r}")
        if max_consecutive_skips < 1:
            raise ValueError('NonFiniteLossHook: max_consecutive_skips must be '
                             f'at least 1, got {max_consecutive_skips}')
        self.action = action
        self.max_consecutive_skips = max_consecutive_skips
        self.skipped_total = 0
        self.skipped_in_a_row = 0

    # -------------------------------------------------------- installation
    def before_train(self, runner) -> None:
        wrapper = runner.model
        model = wrapper.module if is_model_wrapper(wrapper) else wrapper
        if getattr(model, '_non_finite_guard', None) is self:
            return
        self._install(runner, wrapper, model)

    def _install(self, runner, wrapper, model) -> None:
        parse_losses = model.parse_losses
        train_step = wrapper.train_step
        state = dict(agreed=False)

        def guarded_parse_losses(losses):
            loss, log_vars = parse_losses(losses)
            names = [
                name for name in log_vars
                if 'loss' in name and isinstance(log_vars[name], torch.Tensor)
            ]
            if not names:
                return loss, log_vars
            values = torch.stack(
                [log_vars[n].detach().float().reshape(()) for n in names])
            finite = torch.isfinite(values)
            state['agreed'] = True
            if _any_rank(~finite.all()):
                # failure path: reading the values is no concern any more
                terms = {
                    name: float(value)
                    for name, value, ok in zip(names, values.tolist(),
                                               finite.tolist()) if not ok
                }
                if len(terms) > 1:  # the total only repeats its terms
                    terms.pop('loss', None)
                raise _NonFiniteStep(terms)
            return loss, log_vars

        def guarded_train_step(data, optim_wrapper):
            state['agreed'] = False
            # A skipped step must not leave the batch in the BN statistics
            # (a NaN input would poison them): keep a copy to restore.
            saved = _snapshot_buffers(model) if self.action == 'skip' \
                else None
            images = self._images(data)
            try:
                result = train_step(data, optim_wrapper=optim_wrapper)
            except _NonFiniteStep as step:
                report = dict(terms=step.terms, images=images) \
                    if step.terms else None
                return self._handle(runner, optim_wrapper, _gather(report),
                                    None, model, saved)
            except FloatingPointError as error:
                if isinstance(error, NonFiniteLossError):
                    raise
                report = dict(error=str(error), images=images)
                if state['agreed']:  # the others are past the agreement
                    reports = [(_rank(), report)]
                else:
                    # Raised in the forward pass (e.g. by the matcher): take
                    # part in the agreement the other ranks are waiting in.
                    _any_rank(torch.ones(1))
                    reports = _gather(report)
                return self._handle(runner, optim_wrapper, reports, error,
                                    model, saved)
            self.skipped_in_a_row = 0
            return result

        model.parse_losses = guarded_parse_losses
        wrapper.train_step = guarded_train_step
        model._non_finite_guard = self

    # ------------------------------------------------------------ handling
    def _handle(self, runner, optim_wrapper,
                reports: List[Tuple[int, Report]],
                error: Optional[BaseException], model, saved) -> dict:
        """Skip the step or raise; ``reports`` are the same on every rank,
        and so is what this logs or raises."""
        iteration = runner.iter + 1
        causes, images, terms = [], [], {}
        for rank, report in reports:
            on = f' on rank {rank}' if _is_distributed() else ''
            if report.get('terms'):
                terms.update(report['terms'])
                causes.append(
                    f'non-finite loss{on}: {_format(report["terms"])}')
            else:
                causes.append(
                    f'non-finite predictions{on} ({report["error"]})')
            if report['images']:
                images.append(f'Images of the batch{on}: ' +
                              ', '.join(report['images']) + '.')
        what = '; '.join(causes) or 'a non-finite step (no rank reported it)'
        if self.action == 'skip':
            self.skipped_total += 1
            self.skipped_in_a_row += 1
            if self.skipped_in_a_row <= self.max_consecutive_skips:
                optim_wrapper.zero_grad()
                _restore_buffers(model, saved)
                runner.logger.warning(
                    f'NonFiniteLossHook: skipped iteration {iteration} '
                    f'({what}); {self.skipped_total} step(s) skipped so far. '
                    + (' '.join(images) or 'Images: unknown.'))
                return {}
        raise self._error(runner, images, iteration, what, terms) from error

    def _error(self, runner, images: List[str], iteration: int, what: str,
               terms: Dict[str, float]) -> NonFiniteLossError:
        checkpoint = self._latest_checkpoint(runner)
        config = getattr(runner.cfg, 'filename', None) or 'CONFIG'
        where = f'iteration {iteration}'
        if isinstance(runner.train_loop, EpochBasedTrainLoop):
            where += f' (epoch {runner.epoch + 1})'
        lines = [
            f'training stopped at {where}: {what}.',
            'The optimizer step was not taken, so the weights are unchanged.'
        ]
        if self.action == 'skip':
            lines.append(f'{self.skipped_in_a_row} steps in a row were '
                         'skipped: training has diverged.')
        lines.extend(images)
        if checkpoint:
            lines.append(
                f'Latest checkpoint: {checkpoint}; continue from it with '
                f'`python tools/train.py {config} --work-dir '
                f'{runner.work_dir} --resume`')
        else:
            lines.append('No checkpoint has been saved yet, so a new run '
                         'starts from scratch')
        lines[-1] += (
            ' after a fix: lower the learning rate (optim_wrapper.optimizer.'
            'lr), clip gradients (optim_wrapper.clip_grad=dict(max_norm=0.1,'
            ' norm_type=2)), check the annotations of these images, or skip '
            "such steps with custom_hooks=[dict(type='NonFiniteLossHook', "
            "action='skip')].")
        return NonFiniteLossError(
            '\n'.join(lines),
            terms=terms,
            iteration=iteration,
            checkpoint=checkpoint)

    @staticmethod
    def _images(data) -> List[str]:
        samples = data.get('data_samples') if isinstance(data, dict) else None
        paths = []
        for sample in samples or []:
            path = getattr(sample, 'img_path', None)
            if path is None and hasattr(sample, 'metainfo'):
                path = sample.metainfo.get('img_path')
            if path is not None:
                paths.append(str(path))
        return paths

    @staticmethod
    def _latest_checkpoint(runner) -> Optional[str]:
        try:
            with open(osp.join(runner.work_dir, 'last_checkpoint')) as f:
                path = f.read().strip()
        except OSError:
            path = ''
        if not path:
            path = runner.message_hub.get_info('last_ckpt') or ''
        return path or None
