"""``benchmark.py --ort`` in its quick setting (tiny transformer, small
images, one round): the record has the three contenders per size, ONNX
Runtime's detections match ours, and the thread counts are equal. No timing
assertions."""
import json

import torch

from mmdet_conddetr.benchmark import cli
from mmdet_conddetr.benchmark.ort import QUICK_SIZES


def test_quick_ort_rows(tmp_path):
    out = tmp_path / 'ort.json'
    result = cli.main(
        ['--ort', '--quick', '--repeats', '1', '--warmup', '0', '--out',
         str(out)])
    record = json.loads(out.read_text())
    assert record['kind'] == 'ort'
    assert record['machine']['ort_threads'] == torch.get_num_threads()
    assert record['export']['bytes'] > 10e6 and record['export']['opset']
    assert [row['size'] for row in record['rows']] == [
        list(size) for size in QUICK_SIZES
    ]
    for row in record['rows']:
        assert row['check']['ok'] and row['check']['matched'] == 100
        for key in ('ort', 'ours', 'mmdet'):
            assert row[key]['n'] == 1 and row[key]['median'] > 0
        for key in ('ort_vs_ours', 'ort_vs_mmdet', 'ours_vs_mmdet'):
            assert row[key]['speedup'] > 0
    assert 'ONNX Runtime' in record['table']
    assert result['table'] == record['table']
