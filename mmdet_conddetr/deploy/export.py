"""Export a Conditional DETR to ONNX: normalised image batch in, the final
detections (or every layer's raw outputs) out.

The exported graph is the detector of the config, from the normalised
``[B, 3, H, W]`` input to what ``predict`` returns: the top-k over
queries x classes of the last layer's sigmoid scores, their labels and
``xyxy`` boxes in input-image pixels (``--raw``: the per-layer logits
``[L, B, Q, C]`` and normalised ``cxcywh`` boxes ``[L, B, Q, 4]``, as
``mode='tensor'``). Height and width are dynamic, the batch size too on
request; the images of a batch share one size (no padding mask: a padded
batch changes the outputs, as it does in PyTorch).

What differs from ``ConditionalDETR.predict`` and why:

* the fast backbone path is switched off while exporting: its fused oneDNN
  kernels have no ONNX form; ONNX Runtime folds the BatchNorm itself;
* the transformer gets one stand-in data sample with the input size: with
  every image unpadded mmdet's ``pre_transformer`` builds no mask, so a
  single sample stands for the whole batch and the batch size stays
  dynamic;
* the head's top-k is computed here on the whole batch (``predict`` loops
  over data samples) and boxes are scaled by the input size (``predict``
  scales by the original size; :mod:`.runtime` maps them back).

The exporter is torch's default since torch 2.9, ``torch.export`` + ONNX
Script (``dynamo=True``). :func:`trace` runs ``torch.export`` (non-strict)
itself, so a failure can name the module that could not be traced and a
size the code would freeze into the graph is refused rather than baked in
(the TorchScript exporter, ``dynamo=False``, traces such sizes silently);
:func:`export_onnx` translates that program to ONNX.
"""
import contextlib
import json
import os
import os.path as osp
import tempfile
from types import SimpleNamespace
from typing import Optional, Tuple

import torch
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from torch import Tensor, nn

from mmdet_conddetr.errors import ExportError

OUTPUTS = ('scores', 'labels', 'boxes')
# torch.onnx's dynamo exporter emits opset-18 operator forms.
MIN_OPSET = 18
RAW_OUTPUTS = ('all_logits', 'all_boxes')


class ExportableDetector(nn.Module):
    """A ``ConditionalDETR`` as a function of one normalised image tensor.

    Args:
        detector (nn.Module): The detector (eval mode is set by the caller).
        raw (bool): Return every layer's logits and normalised boxes
            instead of the top-k detections.
    """

    def __init__(self, detector: nn.Module, raw: bool = False) -> None:
        super().__init__()
        self.detector = detector
        self.raw = raw
        head = detector.bbox_head
        self.max_per_img = head.test_cfg.get('max_per_img', 100)

    def forward(self, image: Tensor) -> Tuple[Tensor, ...]:
        """Detections of a normalised batch.

        Args:
            image (Tensor): [B, 3, H, W], normalised as the config's data
                preprocessor does (mean/std, RGB).

        Returns:
            tuple[Tensor, ...]: ``scores`` [B, K] float, ``labels`` [B, K]
            int64 and ``boxes`` [B, K, 4] xyxy in input pixels, K =
            min(max_per_img, Q * C); with ``raw``, ``all_logits``
            [L, B, Q, C] and ``all_boxes`` [L, B, Q, 4] (cxcywh, 0..1).
        """
        height, width = image.shape[-2:]
        # pre_transformer reads only these two fields; a DetDataSample would
        # deep-copy the symbolic sizes, which torch.export cannot do.
        sample = SimpleNamespace(batch_input_shape=(height, width),
                                 img_shape=(height, width))
        feats = self.detector.extract_feat(image)
        head_inputs = self.detector.forward_transformer(feats, [sample])
        head = self.detector.bbox_head
        if self.raw:
            return head(**head_inputs)
        logits, boxes = head(head_inputs['hidden_states'][-1:],
                             head_inputs['references'])
        logits, boxes = logits[0], boxes[0]
        num_classes = logits.shape[-1]
        k = min(self.max_per_img, logits.shape[1] * num_classes)
        scores, flat_index = logits.sigmoid().flatten(1).topk(k, dim=1)
        query_index = flat_index // num_classes
        labels = flat_index % num_classes
        picked = boxes.gather(1, query_index[..., None].expand(-1, -1, 4))
        # Tensors made from the sizes with scalar_tensor stay symbolic;
        # new_tensor([width, ...]) would bake the example's size in.
        width, height = (torch.scalar_tensor(v, dtype=picked.dtype)
                         for v in (width, height))
        size = torch.stack([width, height, width, height])
        return scores, labels, bbox_cxcywh_to_xyxy(picked) * size


@contextlib.contextmanager
def export_mode(detector: nn.Module):
    """Eval mode and the plain backbone path while exporting; restored
    afterwards."""
    training = detector.training
    fast = getattr(detector, 'fast_backbone', False)
    detector.eval()
    detector.fast_backbone = False
    try:
        yield detector
    finally:
        detector.fast_backbone = fast
        detector.train(training)


class _ModuleTracker:
    """Which module was running when tracing failed: a forward pre-hook
    pushes each module's name, its forward hook pops it."""

    def __init__(self, root: nn.Module) -> None:
        self.root = root
        self.stack = []
        self.handles = []

    def __enter__(self):
        for name, module in self.root.named_modules():
            self.handles.append(
                module.register_forward_pre_hook(self._entered(name)))
            self.handles.append(module.register_forward_hook(self._left))
        return self

    def _entered(self, name: str):

        def hook(module, args):
            self.stack.append((name, module))

        return hook

    def _left(self, module, args, output):
        # Returns None: a forward hook's return value replaces the output.
        if self.stack:
            self.stack.pop()

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        return False

    def culprit(self) -> str:
        """``'backbone' (ResNet)``-style name of the innermost module, the
        wrapper prefix dropped."""
        for name, module in reversed(self.stack):
            name = name.replace('detector.', '', 1)
            if name and name != 'detector':
                return f'{name!r} ({type(module).__name__})'
        return 'the detector itself (outside any sub-module)'


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f'{type(error).__name__}: {lines[0] if lines else ""}'


def trace(wrapper: ExportableDetector, example: Tensor,
          dynamic_batch: bool):
    """``torch.export`` of the wrapper with dynamic height and width (and
    batch), non-strict (Python runs as usual, so the hooks can tell which
    module failed).

    Raises:
        ExportError: naming the module that could not be traced.
    """
    from torch.export import Dim
    # At least 33 px: the 1/32 feature map must be 2 x 2 or more, because
    # torch.export specialises sizes of 0 and 1.
    dims = {2: Dim('height', min=33, max=8192), 3: Dim('width', min=33,
                                                        max=8192)}
    if dynamic_batch:
        dims[0] = Dim('batch', min=1, max=1024)
    tracker = _ModuleTracker(wrapper)
    try:
        with tracker, torch.no_grad():
            return torch.export.export(wrapper, (example, ),
                                       dynamic_shapes={'image': dims},
                                       strict=False)
    except Exception as error:  # any tracing failure, re-raised with context
        raise ExportError(
            f'ONNX export failed in module {tracker.culprit()}: '
            f'{_first_line(error)}. torch.export could not trace it with a '
            'dynamic image size; make that module traceable (no Python '
            'control flow on tensor values, no .item()/.numpy()/.tolist()) '
            'or use a backbone that is.') from error


def _check_opset(opset: Optional[int]) -> None:
    if opset is not None and opset < MIN_OPSET:
        raise ExportError(
            f'--opset {opset}: the exporter (torch.export + ONNX Script) '
            f'writes opset {MIN_OPSET} or newer; older opsets lack the '
            'operator forms it emits (e.g. Split with num_outputs). Use '
            f'--opset {MIN_OPSET} or more, or leave the default.')


def _translate(program, example: Tensor, names, opset: Optional[int]):
    """The ONNX model proto of an exported program."""
    try:
        return torch.onnx.export(program, (example, ),
                                 input_names=['image'],
                                 output_names=names,
                                 opset_version=opset,
                                 dynamo=True,
                                 verbose=False).model_proto
    except Exception as error:  # re-raised with what failed
        raise ExportError(
            f'ONNX translation failed: {_first_line(error)}') from error


def _out_folder(out: str) -> str:
    """The folder of ``out``, created; checked before the (slow) export."""
    folder = osp.dirname(osp.abspath(out))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise ExportError(f'cannot write {out}: cannot create {folder} '
                          f'({error.strerror})') from error
    if not os.access(folder, os.W_OK):
        raise ExportError(f'cannot write {out}: {folder} is not writable')
    return folder


def _save_checked(proto, out: str) -> None:
    """Write ``proto`` to ``out`` only if the ONNX checker accepts it: a
    temporary file first, renamed over ``out`` at the end, so a failure
    leaves no partial file (and an earlier ``out`` intact)."""
    import onnx
    handle, tmp = tempfile.mkstemp(suffix='.onnx.part', dir=_out_folder(out))
    os.close(handle)
    try:
        onnx.save_model(proto, tmp)
        onnx.checker.check_model(tmp)
        os.replace(tmp, out)
    except Exception as error:
        os.remove(tmp)
        if isinstance(error, OSError):
            raise ExportError(f'cannot write {out}: {error}') from error
        raise ExportError(
            f'the exported graph fails the ONNX checker: '
            f'{_first_line(error)}') from error


def export_onnx(detector: nn.Module,
                out: str,
                metadata: dict,
                opset: Optional[int] = None,
                dynamic_batch: bool = False,
                raw: bool = False,
                example_size: Tuple[int, int] = (224, 288)) -> dict:
    """Export ``detector`` to ``out`` with ``metadata`` stored in the file.

    Args:
        detector (nn.Module): A ``ConditionalDETR`` (any mode; restored).
        out (str): The ``.onnx`` path (weights inside, no external data).
        metadata (dict): See :mod:`.metadata`.
        opset (int, optional): ONNX opset >= 18 (default: the exporter's).
        dynamic_batch (bool): Make the batch size dynamic too.
        raw (bool): Every layer's outputs instead of the detections.
        example_size (tuple): (h, w) of the tracing example; any size works
            at run time.

    Returns:
        dict: ``path``, ``bytes``, ``opset``, ``inputs``, ``outputs``.

    Raises:
        ExportError: untraceable module (named), failed translation, a
            graph the ONNX checker rejects, an unwritable ``out``.
    """
    import onnx
    _check_opset(opset)
    _out_folder(out)
    names = list(RAW_OUTPUTS if raw else OUTPUTS)
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(2 if dynamic_batch else 1, 3, *example_size,
                          generator=generator)
    with export_mode(detector):
        wrapper = ExportableDetector(detector, raw=raw).eval()
        program = trace(wrapper, example, dynamic_batch)
        proto = _translate(program, example, names, opset)
    opset = next(o.version for o in proto.opset_import
                 if o.domain in ('', 'ai.onnx'))
    metadata = dict(metadata, outputs=names, raw=raw, opset=opset)
    onnx.helper.set_model_props(
        proto, {'mmdet_conddetr': json.dumps(metadata, sort_keys=True)})
    _save_checked(proto, out)
    return dict(path=out,
                bytes=osp.getsize(out),
                opset=opset,
                inputs=['image'],
                outputs=names)
