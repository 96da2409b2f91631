"""Loading a foreign checkpoint into our model converts it on the fly
(the load-state-dict pre-hook), and refuses partial loads."""
import pytest
import torch

import mmdet_conddetr  # noqa: F401
from helpers.checkpoint_layouts import (  # noqa: F401 (fixtures)
    build_ours, official_file, ours_model, ours_state, remove_files)
from mmdet_conddetr.checkpoint import KeyMismatchError, export_state_dict


def test_load_from_official_file_converts_on_the_fly(official_file,
                                                     ours_state):
    """mmengine's loader (load_from=, tools/test.py CONFIG CKPT) reads the
    official file (argparse Namespace inside) and the model converts it."""
    from mmengine.runner import load_checkpoint
    model = build_ours()
    load_checkpoint(model, official_file, map_location='cpu', strict=True)
    loaded = model.state_dict()
    assert set(loaded) == set(ours_state)
    for key, value in ours_state.items():
        if not key.endswith('num_batches_tracked'):
            assert torch.equal(loaded[key], value), key


@pytest.mark.parametrize('layout', ('detrex', 'hf', 'mmdet'))
def test_load_state_dict_converts_on_the_fly(ours_model, ours_state, layout):
    foreign = export_state_dict(ours_state, to=layout)
    ours_model.load_state_dict(foreign, strict=True)
    assert torch.equal(ours_model.state_dict()['query_embedding.weight'],
                       ours_state['query_embedding.weight'])


def test_on_the_fly_refuses_partial_loads(ours_state):
    shallow = build_ours(**{'decoder.num_layers': 3})
    foreign = export_state_dict(ours_state, to='official')
    with pytest.raises(KeyMismatchError) as info:
        shallow.load_state_dict(foreign, strict=False)
    assert 'transformer.decoder.layers.5.sa_v_proj.weight' in \
        info.value.unexpected


def test_on_the_fly_leaves_other_checkpoints_alone(ours_state):
    model = build_ours()
    partial = {k: v for k, v in ours_state.items() if k.startswith('neck.')}
    result = model.load_state_dict(partial, strict=False)
    assert 'backbone.conv1.weight' in result.missing_keys
    assert torch.equal(model.state_dict()['neck.convs.0.conv.weight'],
                       partial['neck.convs.0.conv.weight'])
