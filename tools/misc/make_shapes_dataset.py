"""Generate the synthetic ``shapes`` detection dataset in COCO format.

The dataset is small and easy on purpose: it lets a tiny DETR-family model
be trained from scratch on a CPU in minutes, which is what the demo configs
in ``configs/conditional_detr/shapes_demo*.py`` rely on.

Every image shows one to a few coloured shapes (circle, square, triangle,
star) of varied size and rotation on a textured background (noise,
gradients, stripes, checkers, smooth blobs). Shapes may overlap; a later
shape hides part of an earlier one, and a placement is rejected when it
would hide too much of what is already there. The box of an object is the
tight box of its *visible* pixels and its area is the visible pixel count.

Output layout (``--out``, default ``data/shapes``)::

    annotations/instances_train.json
    annotations/instances_val.json
    train/000000.png ...
    val/000000.png ...

The output is a pure function of the arguments: each image has its own
random stream derived from ``(seed, split, index)``, so the same seed gives
byte-identical JSON and image files.

Example::

    python tools/misc/make_shapes_dataset.py --out data/shapes --seed 0
"""
import argparse
import json
import os
import os.path as osp
import time

import cv2
import numpy as np

CLASSES = ('circle', 'square', 'triangle', 'star')
# One display colour per class (RGB), used by the configs' metainfo.
PALETTE = ((220, 20, 60), (0, 130, 200), (60, 180, 75), (255, 190, 0))

SPLITS = {'train': 0, 'val': 1}
# Largest per-channel difference between the two colours of a background.
TEXTURE_CONTRAST = 80
# Default range of a shape's circumscribed radius, as fractions of the image
# side (about 31..77 px wide shapes on a 128 px image).
RADIUS_RANGE = (0.12, 0.30)
# Sub-pixel precision used when rasterising shapes with OpenCV.
_SHIFT = 4
_SCALE = 1 << _SHIFT


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate the synthetic shapes dataset (COCO format)')
    parser.add_argument(
        '--out', default='data/shapes', help='output directory')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument(
        '--num-train', type=int, default=1000, help='number of train images')
    parser.add_argument(
        '--num-val', type=int, default=200, help='number of val images')
    parser.add_argument(
        '--img-size',
        type=int,
        default=128,
        help='side length of the square images in pixels')
    parser.add_argument(
        '--min-objects', type=int, default=1, help='fewest shapes per image')
    parser.add_argument(
        '--max-objects', type=int, default=4, help='most shapes per image')
    parser.add_argument(
        '--radius-range',
        type=float,
        nargs=2,
        default=RADIUS_RANGE,
        metavar=('MIN', 'MAX'),
        help='range of the shapes\' circumscribed radius as fractions of the '
        'image side')
    parser.add_argument(
        '--format',
        choices=['png', 'jpg'],
        default='png',
        help='image file format')
    parser.add_argument(
        '--quiet', action='store_true', help='only print the summary')
    args = parser.parse_args(argv)
    if args.num_train < 0 or args.num_val < 0:
        parser.error('--num-train and --num-val must not be negative')
    if args.img_size < 32:
        parser.error('--img-size must be at least 32')
    if not 1 <= args.min_objects <= args.max_objects:
        parser.error('need 1 <= --min-objects <= --max-objects')
    if not 0.02 <= args.radius_range[0] <= args.radius_range[1] <= 0.45:
        parser.error('need 0.02 <= --radius-range MIN <= MAX <= 0.45')
    args.radius_range = tuple(args.radius_range)
    return args


# --------------------------------------------------------------------------
# backgrounds


def _random_colour(rng, low=0, high=256):
    return rng.integers(low, high, size=3).astype(np.float32)


def _smooth_noise(rng, size, cells):
    """Low-frequency noise in [0, 1]: a coarse grid upsampled bicubically."""
    coarse = rng.random((cells, cells)).astype(np.float32)
    return np.clip(
        cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1)


def make_background(rng, size):
    """Return a float32 HxWx3 RGB texture with values in [0, 255].

    The texture blends two colours at most ``TEXTURE_CONTRAST`` apart per
    channel, so the shapes (drawn in a contrasting colour) stay the most
    salient structure even on stripes and checkers.
    """
    kind = rng.integers(5)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c1 = _random_colour(rng)
    c2 = np.clip(
        c1 + rng.uniform(-TEXTURE_CONTRAST, TEXTURE_CONTRAST, size=3), 0,
        255).astype(np.float32)
    if kind == 0:  # flat colour
        weight = np.zeros((size, size), np.float32)
    elif kind == 1:  # linear gradient in a random direction
        angle = rng.uniform(0, 2 * np.pi)
        proj = np.cos(angle) * xx + np.sin(angle) * yy
        weight = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
    elif kind == 2:  # soft stripes
        angle = rng.uniform(0, np.pi)
        freq = rng.uniform(3, 10)
        proj = np.cos(angle) * xx + np.sin(angle) * yy
        weight = 0.5 + 0.5 * np.sin(2 * np.pi * freq * proj)
        weight *= rng.uniform(0.3, 0.8)
    elif kind == 3:  # checkerboard
        cells = int(rng.integers(4, 12))
        weight = ((np.floor(xx * cells) + np.floor(yy * cells)) % 2)
        weight = weight.astype(np.float32) * rng.uniform(0.2, 0.6)
    else:  # smooth blobs
        weight = _smooth_noise(rng, size, int(rng.integers(3, 8)))
    img = c1 * (1 - weight[..., None]) + c2 * weight[..., None]
    sigma = rng.uniform(2, 12)
    img += rng.normal(0, sigma, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255)


# --------------------------------------------------------------------------
# shapes


def _polygon(rng, name, cx, cy, radius):
    """Vertices (float, Nx2) of a polygon shape inscribed in ``radius``."""
    rot = rng.uniform(0, 2 * np.pi)
    if name == 'square':
        angles = rot + np.arange(4) * np.pi / 2
        radii = np.full(4, radius)
    elif name == 'triangle':
        # roughly equilateral, with a little jitter of the corners
        angles = rot + np.arange(3) * 2 * np.pi / 3
        angles += rng.uniform(-0.15, 0.15, size=3)
        radii = radius * rng.uniform(0.9, 1.0, size=3)
    elif name == 'star':
        angles = rot + np.arange(10) * np.pi / 5
        inner = rng.uniform(0.4, 0.55)
        radii = np.where(np.arange(10) % 2 == 0, radius, radius * inner)
    else:
        raise ValueError(name)
    return np.stack(
        [cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)


def draw_mask(rng, name, size, radius_range=RADIUS_RANGE):
    """Rasterise one shape at a random position; return its bool mask.

    ``radius_range`` bounds the shape's circumscribed radius as fractions of
    the image side.
    """
    radius = rng.uniform(*radius_range) * size
    margin = radius + 1
    cx = rng.uniform(margin, size - margin)
    cy = rng.uniform(margin, size - margin)
    mask = np.zeros((size, size), np.uint8)
    if name == 'circle':
        cv2.circle(mask, (int(round(cx * _SCALE)), int(round(cy * _SCALE))),
                   int(round(radius * 0.85 * _SCALE)), 1, -1, cv2.LINE_8,
                   _SHIFT)
    else:
        pts = np.round(_polygon(rng, name, cx, cy, radius) * _SCALE)
        cv2.fillPoly(mask, [pts.astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
    return mask.astype(bool)


def _contrasting_colour(rng, background, mask):
    """A colour that stands out from the background under ``mask``."""
    under = background[mask].mean(axis=0)
    best, best_dist = None, -1.0
    for _ in range(20):
        colour = _random_colour(rng)
        dist = float(np.abs(colour - under).sum())
        if dist > best_dist:
            best, best_dist = colour, dist
        if dist >= 200:
            break
    return best


def make_image(rng,
               size,
               min_objects,
               max_objects,
               min_visible=0.6,
               radius_range=RADIUS_RANGE):
    """Return (uint8 RGB image, list of (label, visible bool mask))."""
    img = make_background(rng, size)
    num = int(rng.integers(min_objects, max_objects + 1))
    full_masks, visible, labels = [], [], []
    for _ in range(num):
        for _attempt in range(30):
            label = int(rng.integers(len(CLASSES)))
            mask = draw_mask(rng, CLASSES[label], size, radius_range)
            if mask.sum() < 16:
                continue
            # The new shape goes on top: everything under it gets hidden.
            if all((vis & ~mask).sum() >= min_visible * full.sum()
                   for full, vis in zip(full_masks, visible)):
                break
        else:
            break  # could not place another shape; keep what we have
        colour = _contrasting_colour(rng, img, mask)
        shade = rng.normal(0, 6, size=(int(mask.sum()), 3))
        img[mask] = np.clip(colour + shade, 0, 255)
        visible = [vis & ~mask for vis in visible]
        full_masks.append(mask)
        visible.append(mask.copy())
        labels.append(label)
    return np.round(img).astype(np.uint8), list(zip(labels, visible))


def mask_to_box(mask):
    """Tight COCO box ``[x, y, w, h]`` (pixel extent) of a bool mask."""
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    return [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)]


# --------------------------------------------------------------------------
# dataset


def generate_split(out_dir, split, num_images, args, log):
    img_dir = osp.join(out_dir, split)
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    ann_id = 1
    for idx in range(num_images):
        rng = np.random.default_rng(
            np.random.SeedSequence([args.seed, SPLITS[split], idx]))
        img, objects = make_image(
            rng,
            args.img_size,
            args.min_objects,
            args.max_objects,
            radius_range=args.radius_range)
        file_name = f'{idx:06d}.{args.format}'
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if args.format == 'jpg' \
            else [cv2.IMWRITE_PNG_COMPRESSION, 3]
        ok = cv2.imwrite(
            osp.join(img_dir, file_name), img[..., ::-1].copy(), params)
        if not ok:
            raise IOError(f'could not write {osp.join(img_dir, file_name)}')
        image_id = idx + 1
        images.append(
            dict(
                id=image_id,
                file_name=file_name,
                width=args.img_size,
                height=args.img_size))
        for label, mask in objects:
            annotations.append(
                dict(
                    id=ann_id,
                    image_id=image_id,
                    category_id=label + 1,
                    bbox=mask_to_box(mask),
                    area=float(mask.sum()),
                    iscrowd=0))
            ann_id += 1
        if (idx + 1) % 200 == 0 or idx + 1 == num_images:
            log(f'  {split}: {idx + 1}/{num_images} images')
    coco = dict(
        info=dict(
            description='Synthetic shapes detection dataset',
            version='1.0',
            seed=args.seed,
            img_size=args.img_size,
            radius_range=list(args.radius_range)),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=name, supercategory='shape')
            for i, name in enumerate(CLASSES)
        ])
    ann_dir = osp.join(out_dir, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    ann_file = osp.join(ann_dir, f'instances_{split}.json')
    with open(ann_file, 'w') as f:
        json.dump(coco, f, indent=None, separators=(',', ':'))
        f.write('\n')
    return ann_file, len(annotations)


def main():
    args = parse_args()

    def log(msg):
        if not args.quiet:
            print(msg, flush=True)

    start = time.perf_counter()
    out_dir = args.out
    log(f'Generating shapes dataset (seed={args.seed}, '
        f'{args.img_size}x{args.img_size} px) into {osp.abspath(out_dir)}')
    for split, num in (('train', args.num_train), ('val', args.num_val)):
        ann_file, num_anns = generate_split(out_dir, split, num, args, log)
        print(f'Wrote {num} {split} images with {num_anns} objects: '
              f'{osp.join(out_dir, split)}/ and {ann_file}')
    print(f'Done in {time.perf_counter() - start:.1f} s; classes: '
          f'{", ".join(CLASSES)}')


if __name__ == '__main__':
    main()
