"""Host<->device transfers of a training iteration's loss (issue 13),
counted by helpers/transfers.py: at most 3 from the package (the matching
cost to the host, the matches of all layers to the device), where the
per-layer index copies, the box-count ``.item()`` and the finiteness checks
made 44 (R50, 6 decoder layers, batch 2)."""
import pytest
import torch
from builders import build_model, make_batch
from helpers.transfers import TransferCounter

from mmdet_conddetr.engine.hooks import non_finite_loss

BOXES = (torch.tensor([[4., 6., 40., 50.], [20., 10., 60., 30.]]),
         torch.tensor([[10., 8., 90., 60.]]))
LABELS = (torch.tensor([3, 17]), torch.tensor([58]))


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return build_model('r50_50ep.py').train()


def _count(model, boxes=BOXES, labels=LABELS):
    batch = make_batch(model, ((64, 64), (64, 96)), boxes, labels,
                       training=True)
    with TransferCounter() as counter:
        losses = model.loss(batch['inputs'], batch['data_samples'])
    return counter, losses


def test_loss_makes_at_most_three_transfers(model):
    counter, losses = _count(model)
    assert counter.total <= 3, counter.calls
    kinds = sorted(what for what, _ in counter.calls)
    assert kinds == ['cpu', 'to(device)'], counter.calls
    assert len(losses) == 3 * 6
    # the box count stays a tensor (it was an .item() before)
    assert all(torch.isfinite(value) for value in losses.values())


def test_no_ground_truth_makes_no_transfer(model):
    empty = (torch.zeros(0, 4), torch.zeros(0, 4))
    no_labels = (torch.zeros(0, dtype=torch.long), ) * 2
    counter, losses = _count(model, empty, no_labels)
    assert counter.total == 0, counter.calls
    assert float(losses['loss_bbox']) == 0 and float(losses['loss_cls']) > 0


def test_counter_sees_the_package_calls():
    """The counter counts what it should: NonFiniteLossHook's agreement
    reads one flag (its only host sync of an iteration)."""
    with TransferCounter() as counter:
        assert non_finite_loss._any_rank(torch.zeros(1)) is False
    assert counter.total == 1, counter.calls
    with TransferCounter() as counter:
        torch.zeros(2).tolist()  # not from the package
    assert counter.total == 0
