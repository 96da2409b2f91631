"""Fixtures shared by the equivalence tests with transformers
(``test_hf_*.py``): the two models, the padded batch and both models'
outputs, built once for this folder (package scope) by
:mod:`helpers.hf_equivalence`. No test may download: transformers runs
offline."""
import os

import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')


@pytest.fixture(scope='package')
def hf_models():
    """dict(hf, ours, state, sources, load): transformers' model with seeded
    random weights and ours with the same weights."""
    from helpers.hf_equivalence import build_models
    return build_models()


@pytest.fixture(scope='package')
def hf_batch(hf_models):
    """dict(images, inputs, samples, pixel_mask) of the two-image batch."""
    from helpers.hf_equivalence import build_batch
    return build_batch(hf_models)


@pytest.fixture(scope='package')
def hf_outputs(hf_models, hf_batch):
    """Both models' outputs on ``hf_batch`` and their intermediate results."""
    from helpers.hf_equivalence import run_both
    return run_both(hf_models, hf_batch)
