"""Registries of the ``mmdet_conddetr`` scope.

Every registry node that :mod:`mmdet.registry` defines gets a child here, so a
config with ``default_scope = 'mmdet_conddetr'`` resolves every ``type`` in our
scope first and falls back to mmdet (and through it to mmengine). Mirroring only
some nodes would make the runner build the missing ones from the root registry,
where mmdet's names are unknown.

Each child carries ``locations`` so that building from a config imports the
modules that register our classes; configs need no ``custom_imports``.
"""
from mmdet import registry as mmdet_registry
from mmengine import registry as mmengine_registry
from mmengine.registry import Registry

SCOPE = 'mmdet_conddetr'

_MODEL_MODULES = ['mmdet_conddetr.models']


def _child(parent: Registry, locations=()) -> Registry:
    # The parent's own locations come along, so mmdet's modules are imported too.
    return Registry(
        parent.name,
        parent=parent,
        scope=SCOPE,
        locations=list(locations) + list(parent._locations))


RUNNERS = _child(mmdet_registry.RUNNERS)
RUNNER_CONSTRUCTORS = _child(mmdet_registry.RUNNER_CONSTRUCTORS)
LOOPS = _child(mmdet_registry.LOOPS)
HOOKS = _child(mmdet_registry.HOOKS, ['mmdet_conddetr.engine'])
DATASETS = _child(mmdet_registry.DATASETS, ['mmdet_conddetr.datasets'])
DATA_SAMPLERS = _child(mmdet_registry.DATA_SAMPLERS)
TRANSFORMS = _child(mmdet_registry.TRANSFORMS, ['mmdet_conddetr.datasets'])
MODELS = _child(mmdet_registry.MODELS, _MODEL_MODULES)
MODEL_WRAPPERS = _child(mmdet_registry.MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = _child(mmdet_registry.WEIGHT_INITIALIZERS)
OPTIMIZERS = _child(mmdet_registry.OPTIMIZERS)
OPTIM_WRAPPERS = _child(mmdet_registry.OPTIM_WRAPPERS, ['mmdet_conddetr.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = _child(mmdet_registry.OPTIM_WRAPPER_CONSTRUCTORS,
                                    ['mmdet_conddetr.engine'])
PARAM_SCHEDULERS = _child(mmdet_registry.PARAM_SCHEDULERS)
METRICS = _child(mmdet_registry.METRICS)
EVALUATOR = _child(mmdet_registry.EVALUATOR)
TASK_UTILS = _child(mmdet_registry.TASK_UTILS, _MODEL_MODULES)
VISUALIZERS = _child(mmdet_registry.VISUALIZERS)
VISBACKENDS = _child(mmdet_registry.VISBACKENDS)
LOG_PROCESSORS = _child(mmdet_registry.LOG_PROCESSORS)
# mmdet has no FUNCTIONS node; mmengine's inferencers look it up in our scope.
FUNCTIONS = _child(mmengine_registry.FUNCTIONS)
