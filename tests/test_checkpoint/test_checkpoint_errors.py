"""Unreadable files, other architectures, class heads that cannot be
mapped and incomplete conversions give errors naming the file, key or
number."""
import datetime
from collections import OrderedDict

import pytest
import torch

import mmdet_conddetr  # noqa: F401
from helpers.checkpoint_layouts import (  # noqa: F401 (fixtures)
    build_ours, official_file, ours_model, ours_state, remove_files)
from mmdet_conddetr.checkpoint import (CheckpointFileError, KeyMismatchError,
                                       NumClassesError, UnknownLayoutError,
                                       UnsafeCheckpointError,
                                       convert_state_dict, detect_source,
                                       export_state_dict,
                                       load_foreign_checkpoint,
                                       read_checkpoint_file)


def test_truncated_file(official_file, tmp_path):
    data = open(official_file, 'rb').read()
    path = tmp_path / 'truncated.pth'
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointFileError, match='truncated'):
        load_foreign_checkpoint(str(path))
    legacy = tmp_path / 'legacy.pth'
    torch.save({'model': {'x': torch.ones(1000)}}, legacy,
               _use_new_zipfile_serialization=False)
    legacy.write_bytes(legacy.read_bytes()[:300])
    with pytest.raises(CheckpointFileError, match='truncated or corrupt'):
        read_checkpoint_file(str(legacy))
    safetensors = tmp_path / 'model.safetensors'
    from safetensors.torch import save_file
    save_file({'x': torch.ones(1000)}, str(safetensors))
    safetensors.write_bytes(safetensors.read_bytes()[:200])
    with pytest.raises(CheckpointFileError, match='truncated'):
        read_checkpoint_file(str(safetensors))


@pytest.mark.parametrize('content, words', [
    (b'model:\n  type: ConditionalDETR\n', 'not a PyTorch checkpoint'),
    (b'<!DOCTYPE html><html><body>Sign in</body></html>', 'HTML'),
    (b'', 'empty'),
])
def test_not_a_checkpoint(tmp_path, content, words):
    path = tmp_path / 'model.pth'
    path.write_bytes(content)
    with pytest.raises(CheckpointFileError, match=words):
        load_foreign_checkpoint(str(path))


def test_missing_file():
    with pytest.raises(CheckpointFileError, match='not found'):
        load_foreign_checkpoint('/nonexistent/checkpoint.pth')


def test_file_without_state_dict(tmp_path):
    path = tmp_path / 'eval.pth'
    torch.save({'precision': [0.1, 0.2], 'epoch': 3}, path)
    with pytest.raises(CheckpointFileError, match='no state dict'):
        load_foreign_checkpoint(str(path))


def test_unsafe_file_needs_explicit_trust(tmp_path, ours_state):
    path = tmp_path / 'with_objects.pth'
    torch.save({'model': export_state_dict(ours_state, to='detrex'),
                'date': datetime.date(2022, 11, 1)}, path)
    with pytest.raises(UnsafeCheckpointError, match='--unsafe-load'):
        load_foreign_checkpoint(str(path))
    result = load_foreign_checkpoint(str(path), unsafe_load=True)
    assert result.source == 'detrex'


@pytest.mark.parametrize('keys, words', [
    ({'transformer.decoder.layers.0.multihead_attn.in_proj_weight': 1,
      'transformer.decoder.layers.0.linear1.weight': 1}, 'DETR'),
    ({'decoder.layers.0.cross_attn.attn.in_proj_weight': 1},
     "MMDetection's DETR"),
    ({'transformer.decoder.layers.0.cross_attn.sampling_offsets.weight': 1},
     'Deformable'),
    ({'decoder.ref_anchor_head.layers.0.weight': 1,
      'decoder.layers.0.cross_attn.qpos_sine_proj.weight': 1}, 'DAB-DETR'),
    ({'conv1.weight': 1, 'layer1.0.conv1.weight': 1, 'fc.weight': 1},
     'classification'),
    ({'encoder.blocks.0.attn.qkv.weight': 1}, 'no supported'),
])
def test_other_architectures_are_named(keys, words):
    state = {key: torch.zeros(1) for key in keys}
    with pytest.raises(UnknownLayoutError, match=words):
        convert_state_dict(state)
    assert detect_source(state, raise_error=False) is None


def test_wrong_num_classes(ours_state):
    official = export_state_dict(ours_state, to='official')
    with pytest.raises(NumClassesError) as info:
        convert_state_dict(official, num_classes=81)
    message = str(info.value)
    assert '81' in message and '91' in message and '80' in message
    with pytest.raises(NumClassesError, match='20 only'):
        convert_state_dict({**ours_state,
                            'bbox_head.fc_cls.weight': torch.zeros(20, 256),
                            'bbox_head.fc_cls.bias': torch.zeros(20)},
                           num_classes=80)
    # 91 keeps the category-id rows
    kept = convert_state_dict(official, num_classes=91)
    assert torch.equal(kept['bbox_head.fc_cls.weight'],
                       official['class_embed.weight'])


def test_key_mismatches_are_listed(ours_state):
    official = export_state_dict(ours_state, to='official')
    broken = OrderedDict(official)
    del broken['transformer.decoder.layers.2.ca_kpos_proj.bias']
    broken['transformer.decoder.layers.2.extra_proj.weight'] = torch.ones(1)
    with pytest.raises(KeyMismatchError) as info:
        convert_state_dict(broken)
    error = info.value
    assert error.missing == ['decoder.layers.2.cross_attn.kpos_proj.bias']
    assert error.unexpected == [
        'transformer.decoder.layers.2.extra_proj.weight'
    ]
    assert 'decoder.layers.2.cross_attn.kpos_proj.bias' in str(error)
    # a wrong explicit source consumes nothing
    with pytest.raises(KeyMismatchError, match='Unexpected keys'):
        convert_state_dict(official, source='detrex')
    # a model of another depth (target_keys) is a mismatch too
    shallow = build_ours(**{'encoder.num_layers': 5})
    with pytest.raises(KeyMismatchError, match='encoder.layers.5'):
        convert_state_dict(official, target_keys=shallow.state_dict().keys())
