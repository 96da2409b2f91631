"""``RobustLoadImageFromFile(max_cached_images=N)``: the same pixels as an
uncached load, a private copy per call, least recently used images dropped
first, unreadable files still skipped and never cached."""
import cv2
import numpy as np
import pytest
from matplotlib import cbook

from mmdet_conddetr.datasets.transforms import RobustLoadImageFromFile


@pytest.fixture
def photos(tmp_path):
    """Three small real photos (crops of grace_hopper.jpg) as PNG files."""
    full = cv2.imread(str(cbook.get_sample_data('grace_hopper.jpg',
                                                asfileobj=False)))
    paths = []
    for index in range(3):
        crop = full[index * 60:index * 60 + 96, index * 40:index * 40 + 128]
        path = tmp_path / f'photo{index}.png'
        cv2.imwrite(str(path), crop)
        paths.append(str(path))
    return paths


def load(transform, path):
    return transform(dict(img_path=path))


def test_cached_load_equals_uncached_and_is_a_copy(photos):
    plain = RobustLoadImageFromFile()
    cached = RobustLoadImageFromFile(max_cached_images=2)
    for _ in range(2):  # decoded, then served from the cache
        for path in photos[:2]:
            expected, got = load(plain, path), load(cached, path)
            assert np.array_equal(got['img'], expected['img'])
            assert got['img_shape'] == got['ori_shape'] == (96, 128)
    first = load(cached, photos[0])['img']
    first[:] = 0  # a later transform writing into its image
    assert np.array_equal(load(cached, photos[0])['img'],
                          load(plain, photos[0])['img'])


def test_least_recently_used_image_is_dropped(photos, tmp_path):
    cached = RobustLoadImageFromFile(max_cached_images=2)
    before = [load(cached, path)['img'] for path in photos[:2]]
    load(cached, photos[0])  # photo0 is now the most recently used
    load(cached, photos[2])  # evicts photo1
    other = cv2.imread(photos[2])
    for path in photos[:2]:
        cv2.imwrite(path, other)
    assert np.array_equal(load(cached, photos[0])['img'], before[0])
    assert np.array_equal(load(cached, photos[1])['img'], other)
    assert not np.array_equal(before[1], other)


def test_unreadable_files_are_skipped_not_cached(photos, tmp_path):
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'not a png')
    cached = RobustLoadImageFromFile(max_cached_images=4)
    assert load(cached, str(broken)) is None
    cv2.imwrite(str(broken), cv2.imread(photos[0]))
    assert load(cached, str(broken))['img'].shape == (96, 128, 3)


def test_negative_cache_size_is_refused():
    with pytest.raises(ValueError, match='max_cached_images'):
        RobustLoadImageFromFile(max_cached_images=-1)
