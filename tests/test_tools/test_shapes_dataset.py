"""Tests of tools/misc/make_shapes_dataset.py (the synthetic shapes data)."""
import hashlib
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO_ROOT, 'tools', 'misc', 'make_shapes_dataset.py')
CLASSES = ['circle', 'square', 'triangle', 'star']

NUM_TRAIN, NUM_VAL, IMG_SIZE = 12, 5, 80


def generate(out, seed, num_train=NUM_TRAIN, num_val=NUM_VAL, *extra):
    cmd = [
        sys.executable, SCRIPT, '--out',
        str(out), '--seed',
        str(seed), '--num-train',
        str(num_train), '--num-val',
        str(num_val), '--img-size',
        str(IMG_SIZE), *extra
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def tree_digest(root):
    """{relative path: sha256} of every file below ``root``."""
    digests = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                digests[osp.relpath(path, root)] = hashlib.sha256(
                    f.read()).hexdigest()
    return digests


@pytest.fixture(scope='module')
def datasets(tmp_path_factory):
    base = tmp_path_factory.mktemp('shapes')
    out = {}
    for name, seed in (('a', 3), ('b', 3), ('c', 4)):
        stdout = generate(base / name, seed)
        out[name] = (base / name, stdout)
    return out


def test_layout_and_progress_output(datasets):
    root, stdout = datasets['a']
    for split, num in (('train', NUM_TRAIN), ('val', NUM_VAL)):
        assert (root / 'annotations' / f'instances_{split}.json').is_file()
        files = sorted(os.listdir(root / split))
        assert files == [f'{i:06d}.png' for i in range(num)]
    # says what it wrote and where
    assert str(root) in stdout
    assert f'Wrote {NUM_TRAIN} train images' in stdout
    assert f'Wrote {NUM_VAL} val images' in stdout


def test_same_seed_is_byte_identical(datasets):
    digest_a = tree_digest(datasets['a'][0])
    digest_b = tree_digest(datasets['b'][0])
    assert len(digest_a) == NUM_TRAIN + NUM_VAL + 2
    assert digest_a == digest_b


def test_different_seed_differs(datasets):
    digest_a = tree_digest(datasets['a'][0])
    digest_c = tree_digest(datasets['c'][0])
    assert digest_a.keys() == digest_c.keys()
    differing = [k for k in digest_a if digest_a[k] != digest_c[k]]
    # every image and both annotation files change with the seed
    assert len(differing) == len(digest_a)


@pytest.mark.parametrize('split,num', [('train', NUM_TRAIN), ('val', NUM_VAL)])
def test_coco_annotations_are_valid(datasets, split, num):
    root = datasets['a'][0]
    coco = COCO(str(root / 'annotations' / f'instances_{split}.json'))

    cats = coco.loadCats(coco.getCatIds())
    assert [c['id'] for c in cats] == [1, 2, 3, 4]
    assert [c['name'] for c in cats] == CLASSES

    img_ids = coco.getImgIds()
    assert len(img_ids) == num
    ann_ids = set()
    for img_id in img_ids:
        info = coco.loadImgs(img_id)[0]
        assert info['width'] == info['height'] == IMG_SIZE
        img = cv2.imread(str(root / split / info['file_name']))
        assert img is not None and img.shape == (IMG_SIZE, IMG_SIZE, 3)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        # default: one to four shapes per image
        assert 1 <= len(anns) <= 4
        for ann in anns:
            x, y, w, h = ann['bbox']
            assert w > 0 and h > 0
            assert x >= 0 and y >= 0
            assert x + w <= info['width'] and y + h <= info['height']
            assert ann['iscrowd'] == 0
            assert ann['category_id'] in (1, 2, 3, 4)
            # area is the visible pixel count: positive, within the box
            assert 0 < ann['area'] <= w * h
            ann_ids.add(ann['id'])
    assert len(ann_ids) == len(coco.getAnnIds())


def _load_generator():
    spec = importlib.util.spec_from_file_location('make_shapes_dataset',
                                                  SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_boxes_are_tight_around_the_visible_shapes():
    gen = _load_generator()
    overlapping = 0
    for idx in range(60):
        rng = np.random.default_rng(np.random.SeedSequence([7, 0, idx]))
        img, objects = gen.make_image(rng, 96, 1, 5)
        assert img.shape == (96, 96, 3) and img.dtype == np.uint8
        boxes = []
        for label, mask in objects:
            assert 0 <= label < len(CLASSES)
            x, y, w, h = map(int, gen.mask_to_box(mask))
            boxes.append((x, y, x + w, y + h))
            inside = np.zeros_like(mask)
            inside[y:y + h, x:x + w] = True
            assert not (mask & ~inside).any()  # nothing outside the box
            # every edge of the box touches the shape
            assert mask[y, x:x + w].any() and mask[y + h - 1, x:x + w].any()
            assert mask[y:y + h, x].any() and mask[y:y + h, x + w - 1].any()
            # shapes are at least ~8% of the image side in radius
            assert mask.sum() >= 16
        # count overlapping boxes to make sure the data has some overlap
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if min(a[2], b[2]) > max(a[0], b[0]) and \
                        min(a[3], b[3]) > max(a[1], b[1]):
                    overlapping += 1
        # a later shape hides part of an earlier one: visible pixels only
        for k, (_, mask) in enumerate(objects[:-1]):
            later = np.zeros_like(mask)
            for _, other in objects[k + 1:]:
                later |= other
            assert not (mask & later).any()
    assert overlapping >= 3


def test_images_match_the_annotations(datasets):
    """Regenerating an image from its seed gives the saved pixels/boxes."""
    gen = _load_generator()
    root = datasets['a'][0]
    coco = COCO(str(root / 'annotations' / 'instances_val.json'))
    for idx in range(NUM_VAL):
        rng = np.random.default_rng(np.random.SeedSequence([3, 1, idx]))
        img, objects = gen.make_image(rng, IMG_SIZE, 1, 4)
        saved = cv2.imread(str(root / 'val' / f'{idx:06d}.png'))
        np.testing.assert_array_equal(saved[..., ::-1], img)  # PNG lossless
        anns = coco.loadAnns(coco.getAnnIds(imgIds=idx + 1))
        assert [a['bbox'] for a in anns] == [
            gen.mask_to_box(m) for _, m in objects
        ]
        assert [a['category_id'] for a in anns] == [
            label + 1 for label, _ in objects
        ]
        assert [a['area'] for a in anns] == [
            float(m.sum()) for _, m in objects
        ]


def test_options_are_respected(tmp_path):
    out = tmp_path / 'jpg'
    generate(out, 0, 3, 2, '--format', 'jpg', '--min-objects', '2',
             '--max-objects', '2', '--radius-range', '0.1', '0.15',
             '--quiet')
    assert sorted(os.listdir(out / 'train')) == [
        '000000.jpg', '000001.jpg', '000002.jpg'
    ]
    with open(out / 'annotations' / 'instances_train.json') as f:
        data = json.load(f)
    counts = np.bincount([a['image_id'] for a in data['annotations']])
    # overlaps may prevent a placement, but 2 small shapes fit easily
    assert counts[1:].tolist() == [2, 2, 2]
    # no shape is wider than its circumscribed circle (+1 px rasterising)
    for ann in data['annotations']:
        assert max(ann['bbox'][2:]) <= 2 * 0.15 * IMG_SIZE + 1
    assert data['info']['seed'] == 0
    assert data['info']['radius_range'] == [0.1, 0.15]


@pytest.mark.parametrize('args,message', [
    (['--min-objects', '3', '--max-objects', '2'], 'min-objects'),
    (['--radius-range', '0.3', '0.2'], 'radius-range'),
    (['--num-train', '-1'], 'num-train'),
])
def test_bad_arguments_fail(tmp_path, args, message):
    proc = subprocess.run(
        [sys.executable, SCRIPT, '--out',
         str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=60)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not os.listdir(tmp_path)  # nothing written


def test_default_run_writes_the_demo_split_sizes(tmp_path):
    """Without size flags (as ``make demo`` calls it) the generator writes
    its documented defaults, and the JSON image counts agree."""
    defaults = _load_generator().parse_args([])
    stdout = subprocess.run(
        [sys.executable, SCRIPT, '--out',
         str(tmp_path / 'full'), '--quiet'],
        capture_output=True,
        text=True,
        timeout=300,
        check=True).stdout
    assert f'Wrote {defaults.num_train} train images' in stdout
    assert f'Wrote {defaults.num_val} val images' in stdout
    for split, count in (('train', defaults.num_train),
                         ('val', defaults.num_val)):
        with open(tmp_path / 'full' / 'annotations' /
                  f'instances_{split}.json') as f:
            assert len(json.load(f)['images']) == count
