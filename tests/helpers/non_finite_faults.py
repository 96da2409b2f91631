"""Fault injection for the distributed non-finite tests (issue 13), imported
by training subprocesses through
``custom_imports=dict(imports=['helpers.non_finite_faults'])``."""
from mmengine.dist import get_rank
from mmengine.hooks import Hook

from mmdet_conddetr.registry import HOOKS


@HOOKS.register_module(force=True)
class RankNonFinitePredictionHook(Hook):
    """On rank ``rank`` only, the class logits the Hungarian assigner gets
    are NaN at (1-based) iteration ``iteration``: the assigner raises there,
    the other ranks' forward passes go on."""

    def __init__(self, rank: int = 1, iteration: int = 3):
        self.rank = rank
        self.iteration = iteration

    def before_train(self, runner) -> None:
        model = getattr(runner.model, 'module', runner.model)
        assigner = model.bbox_head.assigner
        original = assigner.assign

        def assign(cls_logits, *args, **kwargs):
            if get_rank() == self.rank and runner.iter + 1 == self.iteration:
                print(f'RankNonFinitePredictionHook: NaN class logits on '
                      f'rank {self.rank} at iteration {self.iteration}',
                      flush=True)
                cls_logits = cls_logits * float('nan')
            return original(cls_logits, *args, **kwargs)

        assigner.assign = assign

    def after_train(self, runner) -> None:
        """Every rank prints how many steps NonFiniteLossHook skipped (only
        rank 0 logs the hook's warnings)."""
        hook = next(h for h in runner.hooks
                    if type(h).__name__ == 'NonFiniteLossHook')
        print(f'RankNonFinitePredictionHook: rank {get_rank()} skipped '
              f'{hook.skipped_total} step(s), ended at iteration '
              f'{runner.iter}', flush=True)
