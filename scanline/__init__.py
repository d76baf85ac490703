"""STM scan-line tip-state classification on H:Si(100).

Modules: `synth` (physics-based synthetic images), `loaders` (NPZ / MATLAB v7.3 files),
`input_pipeline` (normalisation, leak-free splits, class weights), `augment` (on-device train
augmentation), `model` (ViT line encoder, causal sequential transformer, LRCN), `task` (the
shared loop's Task; its scores come from `common.stats`), `evaluate` (another data file, with a
per-subtype breakdown), `sweep`.
"""
