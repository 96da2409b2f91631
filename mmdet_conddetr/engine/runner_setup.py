"""Start-up steps shared by ``tools/train.py`` and ``tools/test.py``.

MMDetection's two scripts repeat the same arguments and config handling;
here they are written once, with this package's differences:

* the config is read through :func:`~.config_checks.load_config`,
  so a missing file or ``mmdet::`` base gives an error that names the fix;
* a ``--cfg-options`` key the config cannot take (under a ``None``) is an
  error that names it;
* a config without ``default_scope`` runs in the ``mmdet_conddetr`` scope;
* the notes gathered while preparing the run (input checks, CPU
  distributed set-up, AMP) are logged through the runner's logger once it
  exists.
"""
import argparse
import os
import os.path as osp
from typing import Iterable, Optional, Sequence

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from mmdet.utils import setup_cache_size_limit_of_dynamo
from mmdet_conddetr.errors import ConfigCheckError
from mmdet_conddetr.registry import RUNNERS
from .config_checks import load_config


def add_runner_arguments(parser: argparse.ArgumentParser,
                         work_dir_help: str) -> None:
    """Add ``--work-dir``, ``--cfg-options``, ``--launcher`` and
    ``--local-rank`` (the arguments of every runner script)."""
    parser.add_argument('--work-dir', help=work_dir_help)
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config with key=value pairs, merged '
        'into the config. A list value is written key="[a,b]" or key=a,b; '
        'nested lists/tuples like key="[(a,b),(c,d)]" work too. Quote the '
        'value and do not put spaces in it.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch of PyTorch >= 2.0 passes --local-rank,
    # older versions --local_rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_runner_args(parser: argparse.ArgumentParser,
                      argv: Optional[Sequence[str]] = None
                      ) -> argparse.Namespace:
    """Parse, and export ``LOCAL_RANK`` when a launcher passed it as a flag."""
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def load_runner_config(args: argparse.Namespace) -> Config:
    """The config of ``args.config`` with the command line applied.

    Work directory priority: ``--work-dir``, then the config's ``work_dir``,
    then ``./work_dirs/<config name>``.
    """
    # Keep torch.compile from recompiling the dynamic-shape parts forever.
    setup_cache_size_limit_of_dynamo()
    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        try:
            cfg.merge_from_dict(args.cfg_options)
        except TypeError as error:  # a key under a None or non-dict value
            raise ConfigCheckError(
                f'--cfg-options cannot be applied to {args.config}: {error} '
                'Set that key in a config that inherits this one (_base_ = '
                '[...] and a full dict value), or set the whole value.'
            ) from error
    if cfg.get('default_scope') is None:
        cfg.default_scope = 'mmdet_conddetr'
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def build_runner(cfg: Config, notes: Iterable[str]) -> Runner:
    """The runner the config asks for (``runner_type``, else mmengine's),
    with ``notes`` written to its log."""
    runner = (Runner.from_cfg(cfg)
              if 'runner_type' not in cfg else RUNNERS.build(cfg))
    for note in notes:
        runner.logger.info(note)
    return runner
