"""tools/model_converters/convert_checkpoint.py and the files it writes."""
import importlib.util
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
