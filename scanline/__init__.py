"""STM scan-line tip-state classification on H:Si(100) (seed 002, issue 5).

Modules: `synth` (physics-based synthetic images), `loaders` (NPZ / MATLAB v7.3 files),
`input_pipeline` (normalisation, leak-free splits, class weights), `augment` (on-device train
augmentation), `model` (ViT line encoder, causal sequential transformer, LRCN), `eval_metrics`
(balanced accuracy, exact AUROC, confusion matrices), `task` (the shared loop's Task), `sweep`.
"""
