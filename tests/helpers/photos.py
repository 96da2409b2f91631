"""Real photographs at COCO sizes, made from matplotlib's sample data (no
download): JPEG files cut and resized from ``grace_hopper.jpg``."""
import os.path as osp
from typing import Dict

from matplotlib import cbook
from PIL import Image

# (width, height) of typical COCO images
COCO_SIZES = [(640, 480), (640, 427), (500, 375), (612, 612), (480, 640)]
EXIF_ORIENTATION = 0x0112


def source_photo() -> Image.Image:
    return Image.open(
        cbook.get_sample_data('grace_hopper.jpg', asfileobj=False)).convert(
            'RGB')


def write_photos(folder: str) -> Dict[str, str]:
    """Write the COCO-size photos plus an EXIF-orientation-6 copy and a
    grayscale JPEG into ``folder``; returns name -> path."""
    photo = source_photo()
    paths = {}
    for width, height in COCO_SIZES:
        # cut a window of the target aspect ratio, then resize it
        src_w, src_h = photo.size
        scale = min(src_w / width, src_h / height)
        cut = photo.crop((0, 0, round(width * scale), round(height * scale)))
        name = f'{width}x{height}'
        paths[name] = osp.join(folder, f'{name}.jpg')
        cut.resize((width, height), Image.LANCZOS).save(
            paths[name], quality=90)
    # stored 640x480, tagged "rotate 90 CW to display" (orientation 6)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    paths['exif6'] = osp.join(folder, 'exif6.jpg')
    Image.open(paths['640x480']).save(paths['exif6'], exif=exif, quality=90)
    paths['gray'] = osp.join(folder, 'gray.jpg')
    Image.open(paths['640x427']).convert('L').save(paths['gray'], quality=90)
    return paths
