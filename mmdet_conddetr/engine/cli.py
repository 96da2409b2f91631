"""Turn known failures of the command-line tools into one clear message.

``tools/train.py`` and ``tools/test.py`` call ``run_cli(main)``. Errors that
carry a message for the user -- :class:`~mmdet_conddetr.errors.UserFacingError`
(the checkpoint errors included), an unknown ``type`` in the config
(mmengine's registry ``KeyError``, with the nearest registered names added),
a failed download of a file the config names by URL (no internet, a silent
proxy) and the failure of a collective operation in a distributed job (a dead
or stuck rank) -- are printed as ``error: ...`` on stderr and written to the
run's log, and the process exits with status 1. Anything else keeps its traceback.
``MMDET_CONDDETR_DEBUG=1`` shows the traceback in every case.
"""
import os
import os.path as osp
import re
import sys
from typing import Callable, Optional

from mmdet_conddetr.errors import DistributedFailureError, UserFacingError
from .config_checks.registry_types import explain_registry_key_error
from .network import explain_network_error

__all__ = ['run_cli', 'user_message', 'set_cli_context']

_CONTEXT = {}

# mmengine's Registry.build re-raises as "class `X` in module: <message>"
_BUILD_PREFIX = re.compile(r'^(class `\w+` in [\w./\\-]+: )+')

# What gloo/NCCL/the TCP store say when a peer died or stopped responding.
_DIST_PATTERNS = (
    'Connection reset by peer', 'Connection closed by peer', 'Broken pipe',
    'Timed out', 'timed out', 'Socket Timeout', 'waiting for clients',
    'NCCL communicator was aborted', 'NCCL error', 'ProcessGroup',
    'remote worker')


def set_cli_context(**info) -> None:
    """Remember ``config``/``work_dir`` (resume hints) and ``urls``, the
    (config key, URL) pairs the run downloads, for messages."""
    _CONTEXT.update({k: v for k, v in info.items() if v is not None})


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _dist_initialized() -> bool:
    try:
        import torch.distributed as dist
        return dist.is_available() and dist.is_initialized()
    except Exception:
        return False


def _rank() -> Optional[int]:
    if not _dist_initialized():
        return None
    import torch.distributed as dist
    return dist.get_rank()


def _resume_hint() -> str:
    work_dir = _CONTEXT.get('work_dir')
    config = _CONTEXT.get('config', 'CONFIG')
    if not work_dir:
        return ''
    latest = None
    try:
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            latest = f.read().strip() or None
    except OSError:
        pass
    where = f' (latest checkpoint: {latest})' if latest else ''
    world = 'N'
    if _dist_initialized():
        import torch.distributed as dist
        world = dist.get_world_size()
    return (f' Then continue with `tools/dist_train.sh {config} {world} '
            f'--work-dir {work_dir} --resume`{where}.')


def _distributed_message(error: BaseException) -> Optional[str]:
    text = str(error)
    kind = type(error).__name__
    is_dist_type = 'Dist' in kind or kind in ('RuntimeError', )
    if not is_dist_type or not any(p in text for p in _DIST_PATTERNS):
        return None
    if not _dist_initialized() and 'waiting for clients' not in text and \
            'Dist' not in kind:
        return None
    first = text.strip().splitlines()[0] if text.strip() else kind
    first = re.sub(r'^\[[^\]]*\] ', '', first)[:300]
    if 'waiting for clients' in text:
        return str(
            DistributedFailureError(
                'the processes of the distributed job did not all start '
                f'({kind}: {first}). Start every rank, with the same '
                'MASTER_ADDR/PORT and NNODES, a distinct NODE_RANK per node '
                'and the port free (tools/dist_train.sh: PORT=...); a rank '
                'that crashed while starting shows the cause in its output.'))
    return str(
        DistributedFailureError(
            'a collective operation of the distributed job failed '
            f'({kind}: {first}). Another process of the job has most likely '
            'crashed, been killed or stopped responding (every process gives '
            'up after env_cfg.dist_cfg.timeout seconds; torch default 30 '
            "min). Look for the first error in the other ranks' output and "
            'logs and fix it.' + _resume_hint()))


def user_message(error: BaseException) -> Optional[str]:
    """The message to print for ``error``, or None to keep the traceback."""
    for exc in _chain(error):
        if isinstance(exc, UserFacingError):
            return _BUILD_PREFIX.sub('', str(exc))
    for exc in _chain(error):
        if isinstance(exc, KeyError):
            message = explain_registry_key_error(exc)
            if message:
                return message
        message = explain_network_error(exc, _CONTEXT.get('urls') or [])
        if message:
            return message
    for exc in _chain(error):
        message = _distributed_message(exc)
        if message:
            return message
    if isinstance(error, FileNotFoundError):
        return str(error)  # names the missing path
    return None


def _log(message: str) -> None:
    """Write ``message`` to the log file(s) of the run, if any (stderr gets
    it from :func:`run_cli`)."""
    try:
        import logging

        from mmengine.logging import MMLogger
        if not MMLogger._instance_dict:
            return
        logger = MMLogger.get_current_instance()
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0,
                                   message, None, None)
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)
    except Exception:  # logging must never hide the message itself
        pass


def _release_process_group() -> None:
    """Destroy the default process group before exiting on an error.

    Left to interpreter exit, the group's communication threads can still be
    running when its destructor runs, and the process aborts (status -6,
    "terminate called without an active exception") after the error was
    printed; seen once in 2-rank CPU runs under load.
    """
    try:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # the exit status and the message matter more
        pass


def run_cli(main: Callable[[], object]) -> None:
    """Run ``main()``; print known errors without a traceback."""
    try:
        main()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:
        message = user_message(error)
        if message is None:
            raise
        rank = _rank()
        prefix = 'error' if rank is None else f'error (rank {rank})'
        _log(message)
        print(f'{prefix}: {message}', file=sys.stderr, flush=True)
        if os.environ.get('MMDET_CONDDETR_DEBUG'):
            raise
        _release_process_group()
        sys.exit(1)
