"""What the benchmark measures: model names, configs, sizes and targets."""
OURS, MMDET = 'ours', 'mmdet'
OURS_CONFIG = 'mmdet_conddetr::conditional_detr/r50_50ep.py'
OURS_DC5_CONFIG = 'mmdet_conddetr::conditional_detr/dc5_r50_50ep.py'
MMDET_CONFIG = 'mmdet::conditional_detr/conditional-detr_r50_8xb2-50e_coco.py'
TOLERANCE = 1e-4

#: The measured settings. ``train`` sizes: short sides 640 and 576 (the
#: middle of DETR's 480-800 multi-scale range) at COCO's typical 4:3;
#: ``train_square``: the 512x512 batches of fixed-size training recipes.
SETTINGS = {
    'full':
    dict(arch=dict(depth=50,
                   num_queries=300,
                   enc_layers=6,
                   dec_layers=6,
                   ffn=2048),
         infer_size=(800, 1216),
         train_sizes=[(640, 853), (576, 768)],
         train_square_sizes=[(512, 512), (512, 512)],
         train_boxes=[12, 7],
         repeats=10,
         warmup=2,
         train_warmup=1),
    'quick':
    dict(arch=dict(depth=50,
                   num_queries=20,
                   enc_layers=1,
                   dec_layers=2,
                   ffn=128),
         infer_size=(96, 128),
         train_sizes=[(96, 128), (80, 112)],
         train_square_sizes=[(96, 96), (96, 96)],
         train_boxes=[3, 2],
         repeats=3,
         warmup=1,
         train_warmup=1),
}
SCALE_SIZES = [(512, 512), (800, 1216), (1333, 1333)]
SCALE_QUERIES = [100, 300, 900]
TARGETS = dict(inference=1.25, transformer=1.5, train=1.3,
               train_square=1.3)
