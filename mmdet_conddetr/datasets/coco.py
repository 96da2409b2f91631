"""mmdet's ``CocoDataset`` with clear errors and counted repairs.

Registered in the ``mmdet_conddetr`` scope as ``RobustCocoDataset``;
``tools/train.py`` and ``tools/test.py`` use it wherever a config asks for
``CocoDataset`` (see :mod:`mmdet_conddetr.engine.preflight`), the registry
name ``CocoDataset`` keeps naming mmdet's class. For a valid annotation file
it produces exactly the data list of mmdet's class. What differs:

* a missing ``data_root`` / annotation file, a file that is not JSON, or a
  JSON that is not in COCO detection format raises
  :class:`~mmdet_conddetr.errors.DataCheckError` naming the file and
  what to fix (mmdet: a ``FileNotFoundError`` from the file back-end, a
  ``JSONDecodeError``/``KeyError`` from pycocotools, or an empty dataset);
* class names of ``metainfo`` that the file's categories lack are an error
  (mmdet silently drops all their boxes);
* boxes mmdet silently drops (zero or negative width/height or area, or
  entirely outside their image) are also dropped, but counted and reported
  in one warning per dataset; malformed ``bbox`` entries (not four finite
  numbers) are dropped and counted instead of crashing; a missing ``area``
  is taken as width x height;
* images whose files do not exist: when none of the first images can be
  found the ``data_prefix`` is surely wrong, which is an error; otherwise
  they are skipped at load time like corrupt images (see
  :mod:`.transforms`);
* at test time an image that cannot be loaded raises an error naming it
  (mmdet: "Test time pipline should not get `None` data_sample").

Images without annotations are kept or filtered exactly as mmdet does
(``filter_cfg.filter_empty_gt``): kept, they are negatives for DETR.

``convention='official'`` (the COCO configs) reads the file as the official
code (torchvision's ``CocoDetection`` + ``ConvertCocoPolysToMask``): images
in ascending id order (mmdet: file order; the order decides which images
share an evaluation batch), and a box is kept when it has a positive width
and height inside its image, whatever its ``area`` field and even under one
pixel (mmdet drops ``w < 1``, ``h < 1`` and ``area <= 0``). Crowd boxes stay
``ignore_flag=1`` instances, which ``PackDetInputs`` keeps out of the
training targets, as the official loader drops them.
"""
import copy
import json
import math
import os.path as osp
from collections import Counter
from typing import List

from mmdet.datasets import CocoDataset
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from mmdet_conddetr.registry import DATASETS
from ..errors import DataCheckError

__all__ = ['RobustCocoDataset']

_REASONS = {
    'size': 'zero or negative width/height or area (or under 1 pixel)',
    'outside': 'entirely outside their image',
    'malformed': "a malformed 'bbox' (not 4 finite numbers)",
}
# How many of the first images must be missing to call data_prefix wrong.
_PROBE_IMAGES = 3


def _is_local(path) -> bool:
    return isinstance(path, str) and '://' not in path


@DATASETS.register_module()
class RobustCocoDataset(CocoDataset):
    """``CocoDataset`` with the checks described in the module docstring.

    Args:
        convention (str): ``'mmdet'`` (default) or ``'official'``: image
            order and box rule, see the module docstring.
        *args, **kwargs: mmdet's ``CocoDataset`` arguments.

    Attributes (after loading):
        dropped_boxes (Counter): reason -> number of annotations dropped.
        num_boxes (int): annotations of the listed images read.
    """

    def __init__(self, *args, convention: str = 'mmdet', **kwargs) -> None:
        if convention not in ('mmdet', 'official'):
            raise ValueError(f"convention must be 'mmdet' or 'official', got "
                             f'{convention!r}')
        self.convention = convention  # read by load_data_list (in __init__)
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------ loading
    def load_data_list(self) -> List[dict]:
        self.dropped_boxes = Counter()
        self.num_boxes = 0
        self._check_ann_file()
        try:
            with get_local_path(
                    self.ann_file,
                    backend_args=self.backend_args) as local_path:
                self.coco = self.COCOAPI(local_path)
        except json.JSONDecodeError as error:
            raise DataCheckError(
                f'annotation file {self.ann_file} is not valid JSON: '
                f'{error.msg} at line {error.lineno}, column {error.colno}. '
                'The file is damaged or truncated; fix it or write it '
                'again.') from error
        except UnicodeDecodeError as error:
            raise DataCheckError(
                f'annotation file {self.ann_file} is not a text (JSON) file; '
                'ann_file must name a COCO-format .json file.') from error
        except (AssertionError, KeyError, TypeError) as error:
            raise DataCheckError(self._not_coco(repr(error))) from error
        self._check_coco_structure(self.coco.dataset)

        classes = self.metainfo['classes']
        self.cat_ids = self.coco.get_cat_ids(cat_names=classes)
        self._check_classes(classes)
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self.cat_img_map = copy.deepcopy(self.coco.cat_img_map)

        data_list = []
        ann_ids = []
        img_ids = self.coco.get_img_ids()
        if self.convention == 'official':
            img_ids = sorted(img_ids)
        for img_id in img_ids:
            raw_img_info = dict(self.coco.load_imgs([img_id])[0])
            raw_img_info['img_id'] = img_id
            ids = self.coco.get_ann_ids(img_ids=[img_id])
            ann_ids.extend(ids)
            data_list.append(
                self.parse_data_info({
                    'raw_ann_info': self.coco.load_anns(ids),
                    'raw_img_info': raw_img_info
                }))
        if self.ANN_ID_UNIQUE and len(set(ann_ids)) != len(ann_ids):
            repeated = len(ann_ids) - len(set(ann_ids))
            raise DataCheckError(
                f'annotation file {self.ann_file}: {repeated} annotation '
                "'id' value(s) are repeated; COCO needs a unique id per "
                'annotation. Renumber the annotations.')
        del self.coco
        self._report_dropped()
        self._check_images(data_list)
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> dict:
        img_info = raw_data_info['raw_img_info']
        try:
            file_name = img_info['file_name']
            width, height = img_info['width'], img_info['height']
        except KeyError as error:
            raise DataCheckError(self._not_coco(
                f"image entry {img_info.get('id')} has no {error} key")
                                 ) from error
        data_info = {
            'img_path': osp.join(self.data_prefix['img'], file_name),
            'img_id': img_info['img_id'],
            'seg_map_path': None,
            'height': height,
            'width': width,
        }
        if self.data_prefix.get('seg', None):
            data_info['seg_map_path'] = osp.join(
                self.data_prefix['seg'],
                file_name.rsplit('.', 1)[0] + self.seg_map_suffix)
        if self.return_classes:
            data_info['text'] = self.metainfo['classes']
            data_info['caption_prompt'] = self.caption_prompt
            data_info['custom_entities'] = True

        instances = []
        for ann in raw_data_info['raw_ann_info']:
            if ann.get('ignore', False):
                continue
            self.num_boxes += 1
            box = self._box(ann, width, height)
            if box is None:
                continue
            if ann.get('category_id') not in self.cat_ids:
                continue  # a class the config does not train on
            instance = {
                'ignore_flag': 1 if ann.get('iscrowd', False) else 0,
                'bbox': box,
                'bbox_label': self.cat2label[ann['category_id']],
            }
            if ann.get('segmentation', None):
                instance['mask'] = ann['segmentation']
            instances.append(instance)
        data_info['instances'] = instances
        return data_info

    def _box(self, ann: dict, width, height):
        """[x1, y1, x2, y2] of an annotation, or None (counted) if mmdet
        would drop it or it is malformed."""
        bbox = ann.get('bbox')
        try:
            x1, y1, w, h = (float(v) for v in bbox)
        except (TypeError, ValueError):
            self.dropped_boxes['malformed'] += 1
            return None
        if not all(math.isfinite(v) for v in (x1, y1, w, h)):
            self.dropped_boxes['malformed'] += 1
            return None
        inter_w = max(0, min(x1 + w, width) - max(x1, 0))
        inter_h = max(0, min(y1 + h, height) - max(y1, 0))
        if self.convention == 'official':
            too_small = w <= 0 or h <= 0
        else:
            too_small = w < 1 or h < 1 or not ann.get('area', w * h) > 0
        if too_small:
            self.dropped_boxes['size'] += 1
            return None
        if inter_w * inter_h == 0:
            self.dropped_boxes['outside'] += 1
            return None
        # mmdet keeps the values as given (ints stay ints)
        x1, y1, w, h = ann['bbox']
        return [x1, y1, x1 + w, y1 + h]

    # ------------------------------------------------------------- checks
    def _check_ann_file(self) -> None:
        if self.backend_args or not _is_local(self.ann_file):
            return
        if osp.isfile(self.ann_file):
            return
        root = self.data_root
        if root and _is_local(root) and not osp.isdir(root):
            raise DataCheckError(
                f'data_root not found: {root} (so the annotation file '
                f'{self.ann_file} is missing too). Set data_root to the '
                'folder of your dataset, e.g. --cfg-options '
                'train_dataloader.dataset.data_root=/path/to/data/.')
        raise DataCheckError(
            f'annotation file not found: {self.ann_file}. Check ann_file '
            f'(relative to data_root={root!r}) or create the file.')

    def _not_coco(self, detail: str) -> str:
        return (f'annotation file {self.ann_file} is not in COCO detection '
                f'format ({detail}). Expected a JSON object with the lists '
                "'images' (id, file_name, width, height), 'annotations' (id, "
                "image_id, category_id, bbox=[x, y, w, h]) and 'categories' "
                '(id, name). Convert your annotations to this format.')

    def _check_coco_structure(self, dataset) -> None:
        if not isinstance(dataset, dict):
            raise DataCheckError(self._not_coco(
                f'the top level is a {type(dataset).__name__}'))
        # test-dev style files list no annotations
        required = ('images', 'categories') if self.test_mode else (
            'images', 'annotations', 'categories')
        missing = [
            key for key in required if not isinstance(dataset.get(key), list)
        ]
        if missing:
            found = ', '.join(repr(k) for k in list(dataset)[:8]) or 'none'
            raise DataCheckError(self._not_coco(
                f'no list {", ".join(repr(m) for m in missing)}; top-level '
                f'keys: {found}'))
        if not dataset['images']:
            raise DataCheckError(
                f'annotation file {self.ann_file} lists no images; a dataset '
                'needs at least one.')

    def _check_classes(self, classes) -> None:
        names = [c.get('name') for c in self.coco.dataset['categories']]
        absent = [c for c in classes if c not in names]
        if absent:
            raise DataCheckError(
                f'annotation file {self.ann_file} has no categor'
                f'{"y" if len(absent) == 1 else "ies"} named '
                f'{", ".join(repr(a) for a in absent)} (from the dataset '
                f'metainfo classes); its categories are '
                f'{", ".join(repr(n) for n in names[:20])}'
                f'{" ..." if len(names) > 20 else ""}. Make '
                'metainfo=dict(classes=...) use the names of the file.')

    def _report_dropped(self) -> None:
        total = sum(self.dropped_boxes.values())
        if not total:
            return
        details = ', '.join(f'{n} with {_REASONS[r]}'
                            for r, n in sorted(self.dropped_boxes.items()))
        print_log(
            f'{self.ann_file}: dropped {total} of {self.num_boxes} boxes: '
            f'{details}. Fix these annotations to use them.',
            logger='current',
            level=30)

    def _check_images(self, data_list: List[dict]) -> None:
        if self.backend_args or not data_list:
            return
        probe = [d['img_path'] for d in data_list[:_PROBE_IMAGES]]
        if not all(_is_local(p) for p in probe):
            return
        if any(osp.isfile(p) for p in probe):
            return
        raise DataCheckError(
            f'image file not found: {probe[0]} (nor the next '
            f'{len(probe) - 1}). Check data_prefix=dict(img=...) '
            f'(now {self.data_prefix.get("img")!r}) and data_root '
            f'({self.data_root!r}): together they must give the folder '
            f'holding the files named in {self.ann_file}.')

    # ------------------------------------------------------------ getitem
    def __getitem__(self, idx: int) -> dict:
        if not self.test_mode:
            return super().__getitem__(idx)
        if not self._fully_initialized:
            self.full_init()
        data = self.prepare_data(idx)
        if data is None:
            path = self.get_data_info(idx).get('img_path')
            raise DataCheckError(
                f'image {path} cannot be loaded (missing, corrupt or not an '
                'image; see the warning above). Evaluation needs every '
                'image of the annotation file: replace the file, or remove '
                f'the image from {self.ann_file}.')
        return data
