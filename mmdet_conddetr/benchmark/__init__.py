"""Speed, memory and FLOPs of this package's Conditional DETR next to
MMDetection 3.3's built-in ``ConditionalDETR``, measured side by side
(``tools/analysis_tools/benchmark.py`` is the command line).

Both models are built from the same architecture settings (R50, 6 + 6
layers, 300 queries, d = 256 by default) and carry the same weights
(:mod:`.build`). In one run :func:`.compare.run_compare` measures:

1. inference latency (``mode='predict'``), batch 1, an 800x1216 image;
2. one training step (forward + losses + backward + each config's optimizer
   step with its gradient clipping), batch 2, DETR-sized images;
3. the peak RSS (peak GPU memory on CUDA) of each model, inference and
   training, each in its own subprocess so the peaks do not mix
   (:mod:`.memory`);
4. the transformer and head alone, given the backbone features;
5. the FLOPs of each, attention matmuls included, and the achieved GFLOP/s
   against the dense-matmul GFLOP/s of this machine (:mod:`.flops`);
6. an output check: per-layer logits and boxes and the detections of both
   models agree to 1e-4 (:mod:`.outputs`).

Timings are interleaved, warm-up rounds dropped, and the share of the CPUs
other processes used during each timed section is recorded
(:mod:`.timing`). :func:`.scale.run_scale` times our model alone against
the image size and the number of queries. :mod:`.report` prints the tables,
:mod:`.cli` is the command line.

Modules: ``settings`` -> ``timing``/``machine`` -> ``build``/``steps`` ->
``outputs``/``flops``/``memory``/``profile`` -> ``compare``/``scale`` ->
``report`` -> ``cli``. The package imports nothing on import, so
``python -m mmdet_conddetr.benchmark.memory`` runs the memory worker
without loading it twice.
"""
