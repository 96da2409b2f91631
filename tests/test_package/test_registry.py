"""The mmdet_conddetr registries are children of mmdet's, node for node."""
import pytest
from mmdet import registry as mmdet_registry
from mmengine import registry as mmengine_registry
from mmengine.registry import DefaultScope, Registry

from mmdet_conddetr import registry as our_registry

SCOPE = 'mmdet_conddetr'


def _registries(module, scope):
    """Attribute name -> Registry for the registries of ``scope`` in module."""
    return {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, Registry) and value.scope == scope
    }


MMDET_NODES = _registries(mmdet_registry, 'mmdet')
OUR_NODES = _registries(our_registry, SCOPE)


def test_mmdet_has_the_expected_nodes():
    # Guards the parametrisation below against an empty or partial scan.
    assert {'MODELS', 'DATASETS', 'TRANSFORMS', 'METRICS', 'HOOKS',
            'TASK_UTILS', 'VISUALIZERS', 'OPTIM_WRAPPERS'} <= set(MMDET_NODES)
    assert len(MMDET_NODES) >= 20


@pytest.mark.parametrize('name', sorted(MMDET_NODES))
def test_every_mmdet_node_has_our_child(name):
    parent = MMDET_NODES[name]
    assert name in OUR_NODES, f'mmdet_conddetr.registry lacks {name}'
    child = OUR_NODES[name]
    assert child.scope == SCOPE
    assert child.parent is parent
    assert child.name == parent.name
    assert parent.children[SCOPE] is child


def test_no_extra_nodes():
    # FUNCTIONS: mmdet has no such node, but mmengine's inferencers look it up
    # in the default scope (a child of mmengine's FUNCTIONS).
    assert set(OUR_NODES) == set(MMDET_NODES) | {'FUNCTIONS'}
    # Nothing in our module is a registry of another scope.
    others = [
        name for name, value in vars(our_registry).items()
        if isinstance(value, Registry) and value.scope != SCOPE
    ]
    assert others == []


def test_mmdet_names_resolve_with_scope_prefix():
    from mmdet.models.detectors import ConditionalDETR

    with DefaultScope.overwrite_default_scope(SCOPE):
        with mmengine_registry.MODELS.switch_scope_and_registry(
                None) as registry:
            assert registry is our_registry.MODELS
            cfg = dict(type='mmdet.ConditionalDETR')
            assert registry.get(cfg['type']) is ConditionalDETR


@pytest.mark.parametrize('node, name, module', [
    ('MODELS', 'ResNet', 'mmdet.models.backbones'),
    ('MODELS', 'DetDataPreprocessor', 'mmdet.models.data_preprocessors'),
    ('DATASETS', 'CocoDataset', 'mmdet.datasets'),
    ('METRICS', 'CocoMetric', 'mmdet.evaluation'),
    ('TRANSFORMS', 'PackDetInputs', 'mmdet.datasets.transforms'),
    ('TASK_UTILS', 'HungarianAssigner', 'mmdet.models.task_modules'),
    ('VISUALIZERS', 'DetLocalVisualizer', 'mmdet.visualization'),
])
def test_generic_mmdet_names_resolve_from_our_scope(node, name, module):
    import importlib

    expected = getattr(importlib.import_module(module), name)
    registry = OUR_NODES[node]
    with DefaultScope.overwrite_default_scope(SCOPE):
        assert registry.get(name) is expected


def test_runner_style_build_goes_through_our_scope():
    """The Runner builds from mmengine's root registries; with our default
    scope those must hand over to our children (and on to mmdet)."""
    from mmdet.datasets.transforms import PackDetInputs
    from mmdet.models.backbones import ResNet

    with DefaultScope.overwrite_default_scope(SCOPE):
        transform = mmengine_registry.TRANSFORMS.build(
            dict(type='PackDetInputs'))
        backbone = mmengine_registry.MODELS.build(
            dict(type='ResNet', depth=18, num_stages=4, out_indices=(3, )))
    assert isinstance(transform, PackDetInputs)
    assert isinstance(backbone, ResNet)
