"""configs/conditional_detr/metafile.yml and model-index.yml.

The metafile must use MMDetection's metafile schema (the fields of
MMDetection's own metafiles, which ``mim search``/``mim download`` read),
point at configs that exist, cover every COCO config, and carry the
published numbers and weight URLs.
"""
import glob
import os.path as osp

import pytest
import yaml

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
METAFILE = 'configs/conditional_detr/metafile.yml'
CONFIG_DIR = 'configs/conditional_detr'

# Fields MMDetection 3.3's metafiles use, by level (configs/*/metafile.yml).
COLLECTION_FIELDS = {'Name', 'Metadata', 'Paper', 'README', 'Code'}
COLLECTION_METADATA = {
    'Training Data', 'Training Techniques', 'Training Resources',
    'Architecture'
}
MODEL_FIELDS = {
    'Name', 'In Collection', 'Config', 'Metadata', 'Results', 'Weights',
    'Paper', 'README', 'Code', 'Alias'
}
MODEL_METADATA = {
    'Epochs', 'Iterations', 'Batch Size', 'Training Data',
    'Training Techniques', 'Training Resources', 'Architecture',
    'Training Memory (GB)', 'inference time (ms/im)'
}
RESULT_FIELDS = {'Task', 'Dataset', 'Metrics'}

# Published results: (model name, box AP, weights URL or None).
PUBLISHED = [
    # official repository (Atten4Vis/ConditionalDETR README and hubconf)
    ('r50_50ep', 41.0, 'https://github.com/DeppMeng/ConditionalDETR/'
     'releases/download/v1.0/ConditionalDETR_r50_epoch50.pth'),
    ('dc5_r50_50ep', 43.7, 'https://github.com/DeppMeng/ConditionalDETR/'
     'releases/download/v1.0/ConditionalDETR_r50dc5_epoch50.pth'),
    ('r101_50ep', 42.8, 'https://github.com/DeppMeng/ConditionalDETR/'
     'releases/download/v1.0/ConditionalDETR_r101_epoch50.pth'),
    ('dc5_r101_50ep', 45.0, 'https://github.com/DeppMeng/ConditionalDETR/'
     'releases/download/v1.0/ConditionalDETR_r101dc5_epoch50.pth'),
    # detrex (projects/conditional_detr/README.md)
    ('r50_50ep_detrex', 41.6, 'https://github.com/IDEA-Research/'
     'detrex-storage/releases/download/v0.1.0/conditional_detr_r50_50ep.pth'),
    ('r50_50ep_detrex-converted', 41.02, 'https://github.com/IDEA-Research/'
     'detrex-storage/releases/download/v0.1.0/'
     'converted_conditional_detr_r50_50ep.pth'),
    ('r101_50ep_detrex-converted', 42.97, 'https://github.com/IDEA-Research/'
     'detrex-storage/releases/download/v0.1.0/'
     'converted_conditional_detr_r101_50ep.pth'),
    # MMDetection 3.x (configs/conditional_detr/metafile.yml)
    ('r50_50ep_mmdet', 40.9, 'https://download.openmmlab.com/mmdetection/'
     'v3.0/conditional_detr/conditional-detr_r50_8xb2-50e_coco/'
     'conditional-detr_r50_8xb2-50e_coco_20221121_180202-c83a1dc0.pth'),
    # the paper, 108 epochs (no weights)
    ('r50_108ep', 43.0, None),
    ('dc5_r50_108ep', 45.1, None),
    ('r101_108ep', 44.5, None),
    ('dc5_r101_108ep', 45.9, None),
]


def _load(path):
    with open(osp.join(REPO, path), encoding='utf-8') as f:
        return yaml.safe_load(f)


@pytest.fixture(scope='module')
def metafile():
    return _load(METAFILE)


@pytest.fixture(scope='module')
def models(metafile):
    return metafile['Models']


def _mmdet_fields():
    """The same field sets, read from the installed MMDetection's metafiles
    (None if its ``.mim`` folder is not there, e.g. an editable install)."""
    import mmdet
    files = glob.glob(
        osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', '*',
                 'metafile.yml'))
    if not files:
        return None
    fields = {key: set() for key in ('collection', 'collection_metadata',
                                     'model', 'model_metadata', 'result')}
    for path in files:
        with open(path, encoding='utf-8') as f:
            data = yaml.safe_load(f)
        if not isinstance(data, dict):
            continue
        for collection in data.get('Collections') or []:
            fields['collection'] |= set(collection)
            fields['collection_metadata'] |= set(
                collection.get('Metadata') or {})
        for model in data.get('Models') or []:
            fields['model'] |= set(model)
            fields['model_metadata'] |= set(model.get('Metadata') or {})
            for result in model.get('Results') or []:
                fields['result'] |= set(result)
    return fields


def test_model_index_imports_the_metafile():
    index = _load('model-index.yml')
    assert index == {'Import': [METAFILE]}
    assert osp.isfile(osp.join(REPO, METAFILE))


def test_schema(metafile, models):
    assert set(metafile) == {'Collections', 'Models'}
    collections = metafile['Collections']
    assert [c['Name'] for c in collections] == ['Conditional DETR']
    for collection in collections:
        assert set(collection) <= COLLECTION_FIELDS
        assert {'Name', 'Metadata', 'Paper', 'README'} <= set(collection)
        assert set(collection['Metadata']) == COLLECTION_METADATA
        assert collection['Metadata']['Training Data'] == 'COCO'
        assert isinstance(collection['Metadata']['Architecture'], list)
        assert isinstance(collection['Metadata']['Training Techniques'],
                          list)
        assert collection['Paper'] == {
            'URL': 'https://arxiv.org/abs/2108.06152',
            'Title': 'Conditional DETR for Fast Training Convergence'
        }
        assert osp.isfile(osp.join(REPO, collection['README']))

    names = [model['Name'] for model in models]
    assert len(names) == len(set(names)), 'model names must be unique'
    for model in models:
        assert set(model) <= MODEL_FIELDS, model['Name']
        assert {'Name', 'In Collection', 'Config', 'Metadata',
                'Results'} <= set(model)
        assert model['In Collection'] == 'Conditional DETR'
        assert set(model['Metadata']) <= MODEL_METADATA, model['Name']
        assert isinstance(model['Metadata']['Epochs'], int)
        assert model['Results'], model['Name']
        for result in model['Results']:
            assert set(result) == RESULT_FIELDS
            assert result['Task'] == 'Object Detection'
            assert result['Dataset'] == 'COCO'
            assert set(result['Metrics']) == {'box AP'}
            assert 0 < result['Metrics']['box AP'] < 100
        if 'Weights' in model:
            assert model['Weights'].startswith('https://')
            assert model['Weights'].endswith('.pth')


def test_fields_are_those_mmdetection_uses(metafile, models):
    fields = _mmdet_fields()
    if fields is None:
        pytest.skip("the installed mmdet has no .mim folder to compare with")
    for collection in metafile['Collections']:
        assert set(collection) <= fields['collection']
        assert set(collection['Metadata']) <= fields['collection_metadata']
    for model in models:
        assert set(model) <= fields['model']
        assert set(model['Metadata']) <= fields['model_metadata']
        for result in model['Results']:
            assert set(result) <= fields['result']


def test_every_config_path_exists(models):
    missing = [
        model['Config'] for model in models
        if not osp.isfile(osp.join(REPO, model['Config']))
    ]
    assert not missing, f'metafile points at missing configs: {missing}'


def test_every_coco_config_has_an_entry(models):
    """``mim download mmdet_conddetr --config <name>`` looks models up by
    name: each COCO config has a model named after it (and others may add a
    suffix for weights of other origins)."""
    configs = sorted(
        osp.basename(path)[:-3]
        for path in glob.glob(osp.join(REPO, CONFIG_DIR, '*.py'))
        # the demo and the fine-tuning template publish no weights
        if not osp.basename(path).startswith(('shapes_', 'finetune_')))
    expected = {'r50_50ep', 'r101_50ep', 'dc5_r50_50ep', 'dc5_r101_50ep',
                'r50_108ep', 'r101_108ep', 'dc5_r50_108ep', 'dc5_r101_108ep'}
    assert expected <= set(configs)
    by_name = {model['Name']: model for model in models}
    for config in configs:
        assert config in by_name, f'no metafile entry for {config}.py'
        assert by_name[config]['Config'] == f'{CONFIG_DIR}/{config}.py'
    for model in models:
        stem = osp.basename(model['Config'])[:-3]
        assert model['Name'] == stem or model['Name'].startswith(stem + '_')


@pytest.mark.parametrize('name, box_ap, weights', PUBLISHED)
def test_published_numbers_and_weights(models, name, box_ap, weights):
    by_name = {model['Name']: model for model in models}
    model = by_name[name]
    assert model['Results'][0]['Metrics']['box AP'] == box_ap
    assert model.get('Weights') == weights
    epochs = 108 if '108ep' in name else 50
    assert model['Metadata']['Epochs'] == epochs


def test_foreign_weight_formats_are_explained():
    """No published weight is in this package's layout: the metafile says
    so and points at the converter / on-the-fly loading."""
    with open(osp.join(REPO, METAFILE), encoding='utf-8') as f:
        text = f.read()
    for words in ('official', 'detrex', 'mmdet', 'on the fly',
                  'tools/model_converters/convert_checkpoint.py'):
        assert words in text
