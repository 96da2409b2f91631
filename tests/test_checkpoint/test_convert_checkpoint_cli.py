"""tools/model_converters/convert_checkpoint.py and the files it writes."""
import errno
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import torch

import mmdet_conddetr  # noqa: F401
from helpers.checkpoint_layouts import (  # noqa: F401 (fixtures)
    assert_same, official_file, official_keys, ours_model, ours_state,
    remove_files)
from mmdet_conddetr.checkpoint import (export_state_dict,
                                       load_foreign_checkpoint,
                                       save_checkpoint)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONVERTER = osp.join(REPO, 'tools', 'model_converters',
                     'convert_checkpoint.py')


def _cli():
    spec = importlib.util.spec_from_file_location('convert_checkpoint',
                                                  CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_official_to_ours_and_back(official_file, tmp_path, capsys):
    cli = _cli()
    out = tmp_path / 'r50_official.pth'
    config = osp.join(REPO, 'configs', 'conditional_detr', 'r50_50ep.py')
    assert cli.main([official_file, str(out), '--config', config]) == 0
    printed = capsys.readouterr().out
    assert 'source layout: official (auto-detected' in printed
    assert '91 -> 80' in printed and 'verified' in printed

    # A plain torch, without this package's allow-lists, reads it safely.
    code = ('import torch, sys; ck = torch.load(sys.argv[1], '
            'weights_only=True); m = ck["meta"]; '
            'print(m["source"], m["config"], m["date"][:4], '
            'len(ck["state_dict"]), m["dataset_meta"]["classes"][0])')
    run = subprocess.run([sys.executable, '-c', code, str(out)],
                         capture_output=True, text=True, check=True)
    source, config_name, year, count, first = run.stdout.split()
    assert (source, config_name, count, first) == (
        'official', 'conditional_detr/r50_50ep.py', '617', 'person')
    assert int(year) >= 2024

    # --to official: what the official main.py loads (strict, 91 rows).
    back = tmp_path / 'checkpoint_official.pth'
    assert cli.main([str(out), str(back), '--to', 'official']) == 0
    checkpoint = torch.load(back, weights_only=True)
    assert sorted(checkpoint['model']) == sorted(official_keys())
    assert_same(checkpoint['model'],
                 torch.load(official_file, weights_only=True)['model'])


def test_cli_errors(official_file, tmp_path, capsys):
    cli = _cli()
    dst = tmp_path / 'x.pth'
    assert cli.main([official_file, str(dst), '--num-classes', '81']) == 2
    err = capsys.readouterr().err
    assert 'class head' in err and '81' in err and '91' in err, err
    text = tmp_path / 'notes.txt'
    text.write_text('hello')
    assert cli.main([str(text), str(dst)]) == 2
    err = capsys.readouterr().err
    assert str(text) in err and 'PyTorch checkpoint' in err, err
    assert not dst.exists()


def test_hf_safetensors_export(ours_state, tmp_path):
    exported = export_state_dict(ours_state, to='hf')
    path = str(tmp_path / 'model.safetensors')
    save_checkpoint(exported, path, meta={'source': 'mmdet_conddetr'},
                    layout='hf')
    result = load_foreign_checkpoint(path)
    assert result.source == 'hf'
    for key, value in ours_state.items():
        if not key.endswith('num_batches_tracked'):
            assert torch.equal(result.state_dict[key], value)


def test_cli_output_that_cannot_be_written(official_file, tmp_path, capsys,
                                          monkeypatch):
    """A folder that cannot exist or a full disk: exit 2, one message naming
    the file, nothing (not even a partial .tmp) left behind."""
    cli = _cli()
    blocker = tmp_path / 'not_a_folder'
    blocker.write_text('a file where the output folder should be')
    dst = blocker / 'out.pth'
    assert cli.main([official_file, str(dst)]) == 2
    err = capsys.readouterr().err
    assert str(dst) in err and 'Nothing was written' in err, err

    def full_disk(obj, path, *args, **kwargs):
        with open(path, 'wb') as f:
            f.write(b'PK\x03\x04 half a checkpoint')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, 'save', full_disk)
    dst = tmp_path / 'full' / 'out.pth'
    assert cli.main([official_file, str(dst)]) == 2
    err = capsys.readouterr().err
    assert str(dst) in err and os.strerror(errno.ENOSPC) in err, err
    assert 'MiB' in err
    assert list((tmp_path / 'full').iterdir()) == []


def test_cli_missing_config(official_file, tmp_path, capsys):
    cli = _cli()
    missing = tmp_path / 'no_such_config.py'
    assert cli.main([official_file, str(tmp_path / 'x.pth'), '--config',
                     str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and '--config' in err, err
    assert not (tmp_path / 'x.pth').exists()
