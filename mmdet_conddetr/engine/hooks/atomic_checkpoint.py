"""Checkpoints that survive ``kill -9`` and a full disk.

mmengine's ``CheckpointHook`` writes ``epoch_N.pth`` in place and then
rewrites ``last_checkpoint`` in place. A process killed in the middle (or a
disk that fills up) leaves a truncated checkpoint, or an empty
``last_checkpoint`` that makes ``--resume`` silently start from scratch. With
``max_keep_ckpts`` it also deletes the oldest checkpoint *before* writing the
new one, so with ``max_keep_ckpts=1`` a failed save leaves nothing at all.

:class:`AtomicCheckpointHook` takes the same arguments and keeps the same
file names and bookkeeping, but for a local ``out_dir``:

* every checkpoint is written to a hidden temporary file in the same
  directory (``.epoch_N.pth.tmp-<pid>``), flushed to disk with ``fsync`` and
  only then renamed to its final name (``os.replace`` is atomic on POSIX and
  Windows), and the directory entry is synced too;
* ``last_checkpoint`` is replaced the same way, and only after the checkpoint
  it names is complete;
* outdated checkpoints are deleted only after the new one is safely in place;
* when a write fails (``ENOSPC``, quota, I/O error) the temporary file is
  removed and :class:`~mmdet_conddetr.errors.CheckpointSaveError` says
  which checkpoint is still the latest complete one and how to resume;
* temporary files left by a killed run are removed when training starts.

Remote back-ends (``out_dir`` on S3, Petrel...) keep mmengine's behaviour.
"""
import errno
import glob
import os
import os.path as osp
import re
from contextlib import contextmanager
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from mmdet_conddetr.registry import HOOKS
from mmdet_conddetr.errors import CheckpointSaveError

__all__ = ['AtomicCheckpointHook', 'atomic_write_text', 'fsync_directory']

_TMP_MARK = '.tmp-'
_TMP_PATTERN = re.compile(r'^\..+' + re.escape(_TMP_MARK) + r'(\d+)$')
_NO_SPACE = (errno.ENOSPC, getattr(errno, 'EDQUOT', errno.ENOSPC))


def _temp_name(filename: str) -> str:
    return f'.{filename}{_TMP_MARK}{os.getpid()}'


def fsync_directory(directory: str) -> None:
    """Persist the directory entries (renames) of ``directory``; a no-op
    where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    with open(path, 'rb+') as f:
        f.flush()
        os.fsync(f.fileno())


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def atomic_write_text(path: str, text: str) -> None:
    """Replace ``path`` by a file holding ``text``; readers see either the
    old or the new content, never a partial one."""
    directory = osp.dirname(osp.abspath(path))
    tmp = osp.join(directory, _temp_name(osp.basename(path)))
    try:
        with open(tmp, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    fsync_directory(directory)


def _latest_complete(work_dir: str) -> Optional[str]:
    try:
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            path = f.read().strip()
    except OSError:
        return None
    return path if path and osp.isfile(path) else None


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with crash-safe writes; same arguments.

    Use it as ``default_hooks.checkpoint = dict(type='AtomicCheckpointHook',
    ...)``. ``tools/train.py`` switches a plain ``CheckpointHook`` to this one.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self._atomic = isinstance(self.file_backend, LocalBackend)
        if self._atomic and is_main_process():
            self._remove_stale_temp_files(runner)

    # ----------------------------------------------------------- saving
    def _save_checkpoint_with_step(self, runner, step, meta):
        if not getattr(self, '_atomic', False):
            return super()._save_checkpoint_with_step(runner, step, meta)

        # Same bookkeeping as mmengine, except that the outdated checkpoint
        # is deleted after the new one is complete, not before.
        outdated = None
        if self.max_keep_ckpts > 0 and not (
                self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)

        self._atomic_save(
            runner,
            filename,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            **self.args)

        if not is_main_process():
            return
        last_file = osp.join(runner.work_dir, 'last_checkpoint')
        try:
            atomic_write_text(last_file, self.last_ckpt)
        except OSError as error:
            raise self._save_error(runner, last_file, error) from error
        if outdated is not None:
            old = osp.join(self.out_dir, self.filename_tmpl.format(outdated))
            if osp.isfile(old):
                os.remove(old)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        if not getattr(self, '_atomic', False):
            return super()._save_best_checkpoint(runner, metrics)
        with self._atomic_runner_saves(runner):
            super()._save_best_checkpoint(runner, metrics)

    @contextmanager
    def _atomic_runner_saves(self, runner):
        """Route ``runner.save_checkpoint`` (called by mmengine's best
        checkpoint logic) through :meth:`_atomic_save` for a while."""

        def save(out_dir, filename, file_client_args=None, **kwargs):
            kwargs.pop('backend_args', None)
            if out_dir != self.out_dir:
                raise ValueError(f'unexpected out_dir {out_dir}')
            self._atomic_save(runner, filename, **kwargs)

        runner.save_checkpoint = save
        try:
            yield
        finally:
            del runner.save_checkpoint  # back to the class's method

    def _atomic_save(self, runner, filename: str, **kwargs) -> None:
        final = osp.join(self.out_dir, filename)
        tmp_name = _temp_name(filename)
        tmp = osp.join(self.out_dir, tmp_name)
        save = type(runner).save_checkpoint  # the real one, even if patched
        try:
            # rank 0 writes (mmengine's save_checkpoint is master_only)
            save(
                runner,
                self.out_dir,
                tmp_name,
                self.file_client_args,
                backend_args=self.backend_args,
                **kwargs)
            if is_main_process():
                _fsync_file(tmp)
                os.replace(tmp, final)
                fsync_directory(self.out_dir)
        except OSError as error:
            if is_main_process():
                _remove_quietly(tmp)
            raise self._save_error(runner, final, error) from error
        except BaseException:
            if is_main_process():
                _remove_quietly(tmp)
            raise

    # ----------------------------------------------------------- helpers
    def _save_error(self, runner, path: str,
                    error: OSError) -> CheckpointSaveError:
        reason = error.strerror or str(error)
        if error.errno is not None:
            reason = f'[Errno {error.errno}] {reason}'
        latest = _latest_complete(runner.work_dir)
        if latest is not None:
            kept = ('Nothing was overwritten: the latest complete checkpoint '
                    f'is still {latest} (named in '
                    f'{osp.join(runner.work_dir, "last_checkpoint")}).')
        else:
            kept = 'No complete checkpoint had been saved before in this ' \
                   'work directory.'
        if error.errno in _NO_SPACE:
            fix = (f'Free disk space where {self.out_dir} lives (or save '
                   'elsewhere with default_hooks.checkpoint.out_dir=DIR, or '
                   'keep fewer with default_hooks.checkpoint.max_keep_ckpts='
                   'N)')
        else:
            fix = f'Make {self.out_dir} writable (or save elsewhere with ' \
                  'default_hooks.checkpoint.out_dir=DIR)'
        config = getattr(runner.cfg, 'filename', None) or 'CONFIG'
        return CheckpointSaveError(
            f'could not save the checkpoint {path}: {reason}. {kept} '
            f'{fix}, then continue with `python tools/train.py {config} '
            f'--work-dir {runner.work_dir} --resume`.')

    def _remove_stale_temp_files(self, runner) -> None:
        me = str(os.getpid())
        found = []
        for directory in {self.out_dir, runner.work_dir}:
            for path in glob.glob(osp.join(directory, '.*' + _TMP_MARK + '*')):
                match = _TMP_PATTERN.match(osp.basename(path))
                if match and match.group(1) != me and osp.isfile(path):
                    found.append(path)
        for path in sorted(found):
            _remove_quietly(path)
        if found:
            runner.logger.warning(
                'Removed incomplete checkpoint file(s) left by an '
                'interrupted save: ' + ', '.join(found))
