"""Formula-to-image diffusion ("mathart"): a safe formula language, a JAX renderer, procedural
(formula, image) data, a cross-attention U-Net trained with v-prediction, samplers and honest
metrics.

Layout: ``formula/`` (normalise, tokenize, parse, validate), ``render/`` (AST -> pixels),
``dataset/`` (procedural pairs, TFDS builder, JSONL loader), ``models/`` (formula encoder,
conditional U-Net, VGG16 feature net), ``diffusion.py`` (schedule and samplers), ``losses.py``,
``task.py`` (the shared loop's Task), ``sample.py`` and ``evaluate.py`` (command-line tools).
See ``mathart/README.md``.
"""
