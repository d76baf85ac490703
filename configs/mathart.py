"""Formula-to-image diffusion ("mathart"; seeds 000 and 004: the public repositories
GunaSripuram7/mathy-model-project and jasher4994/Diffusion).

    python -m mathart.main --config=configs/mathart.py:tiny32_cpu --workdir=runs/mathart_cpu
    python -m mathart.main --config=configs/mathart.py:tiny32 --workdir=runs/mathart_tiny32
    python -m mathart.main --config=configs/mathart.py:full512 --workdir=runs/mathart_full512
    python -m mathart.main --config=configs/mathart.py:smoke --workdir=/tmp/mathart_smoke
    python -m mathart.main --config=configs/mathart.py:tiny32 --config.learning_rate=1e-4 \\
        --config.data.source=jsonl --config.data.train_jsonl=/data/pairs.jsonl
    python -m mathart.sample runs/mathart_cpu --formula "r = sin(4*theta)" --n 8
    python -m mathart.evaluate runs/mathart_cpu --split test

Profiles:
- ``tiny32``: ADR 0002 (seed 004) as written: 32x32, T = 200 (``diffusion.timesteps``), 50
  DDIM steps (``sample.num_inference_steps``), lr 5e-5 constant, batch 8, base channels 96,
  time embedding 192, samples every 5 epochs (``sample.every_epochs``), checkpoints every 10
  (``checkpoint_every_epochs``), 150 epochs (the ADR repo's NUM_EPOCHS), log every 100 steps.
  Its 512-d text embedding (frozen CLIP there) is our trained formula encoder's width.
- ``tiny32_cpu``: the profile for 2 CPU cores: a 2x2 patchify stem (the U-Net's top level at
  16x16), 64 base channels x [1, 2, 2], cross-attention at 1/2, 1/4, 1/8, a 2-layer x 128
  encoder, batch 32, lr 1e-3 with a 200-step warm-up and cosine decay, EMA 0.999, 3 epochs of
  36 000 formulas (3 375 steps), sized for about an hour on 2 cores. ``tiny32`` (lr 5e-5
  constant at batch 8, 96 channels at full 32x32 resolution) is sized for ~100 GPU epochs and
  learns little in a CPU hour. Measured figures: mathart/README.md.
- ``full512``: seed 000: 512x512, formula encoder 12 layers x 768 (vocab 5000, learned
  positions), U-Net 320 x [1, 2, 4, 4] with GroupNorm 32, token cross-attention at 1/4, 1/8,
  1/16, extra skips at 1/16 and 1/32, lr 1e-4 with 2000 warm-up steps and cosine restarts every
  10000 steps to 1e-6, batch 16, gradient checkpointing (``model.remat``), bf16 compute, loss
  weights MSE 0.3 / perceptual 0.4 / math 0.2 / colour 0.1. A 4x4 patchify stem makes the
  U-Net's four levels sit at 1/4 ... 1/32 of the image, where the seed's scales are.
- ``smoke``: seconds on CPU (tests): 16x16 images, tiny networks, 2 epochs of 32 examples.

Where each seed number went: the loss weights are ``loss.*_weight`` (all profiles); the
encoder's 12 layers / 768 / 5000 tokens are ``model.num_layers`` / ``model.embedding_dim`` /
``model.vocab_size``; the U-Net's are ``model.base_channels`` / ``model.channel_mult`` /
``model.norm_groups`` / ``model.cross_attention_scales``; EMA 0.9999 and CFG (listed but not
implemented in the seed's code) are ``ema_decay`` and ``diffusion.cond_drop_prob`` +
``sample.guidance_scale``. The seed's FID 12.3 / "94.2 % accuracy" / harmony 8.7 were never
measured by any code and appear nowhere here; `mathart.evaluate` measures ours.
"""

import ml_collections

from common.config import base_config, parse_profile

PROFILES = ("tiny32", "tiny32_cpu", "full512", "smoke")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    profile = parse_profile(
        arg, choices=PROFILES, default="tiny32", config_file="configs/mathart.py"
    )
    c = base_config()
    c.task = "mathart.task:MathArtTask"
    c.profile = profile
    c.data_dir = "~/.cache/jaxfam/mathart"  # rendered datasets are cached here as .npz

    # --- data (mathart.input_pipeline)
    c.data = ml_collections.ConfigDict()
    c.data.source = "procedural"  # "procedural" (rendered formulas) | "jsonl" (your own pairs)
    c.data.image_size = 32  # the ADR's IMAGE_SIZE
    c.data.num_train = 20_000
    c.data.num_val = 500
    c.data.num_test = 1_000
    c.data.data_seed = 0
    c.data.train_jsonl = ""
    c.data.val_jsonl = ""
    c.data.val_fraction = 0.05  # held out from train_jsonl when no val_jsonl is given
    c.data.skip_bad_lines = False
    # "whole": one piece per distinct number; "digits": numbers spelled digit by digit, so an
    # unseen value is made of known pieces (raise model.max_formula_tokens to 80 for the
    # procedural formulas). Measured on tiny32_cpu, whole is not worse: mathart/README.md.
    # "shared": every number is the one piece <num>; its value reaches the encoder only through
    # model.number_features (which it needs).
    c.data.number_tokens = "whole"

    # --- model (mathart.models): formula encoder (seed flag names) + U-Net
    c.model = ml_collections.ConfigDict()
    c.model.vocab_size = 5000  # embedding rows; the tokenizer's vocabulary cap (seed: 5000)
    # Learned positions; the longest sampled formula is 49 pieces (63 with digit-spelled numbers).
    c.model.max_formula_tokens = 64
    c.model.embedding_dim = 256  # encoder width (ADR: TEXT_EMB_DIM 512 of a frozen CLIP)
    c.model.num_layers = 4
    c.model.num_heads = 4
    c.model.mlp_size = 1024
    c.model.base_channels = 96  # ADR BASE_CHANNELS
    c.model.channel_mult = (1, 2, 2)
    c.model.num_res_blocks = 2
    c.model.time_emb_dim = 192  # ADR TIME_EMB_DIM
    c.model.cross_attention_scales = (2, 4)  # image side / feature side (16x16 and 8x8 here)
    c.model.self_attention_scales = (4,)
    c.model.extra_skip_scales = ()
    c.model.patch_size = 1
    c.model.attention_heads = 4
    c.model.norm_groups = 32
    # With patch_size > 1: width of a full-resolution refinement added to the output, which
    # also sees the noisy input (0: none; each 2x2 patch is read out of one feature vector).
    c.model.full_res_channels = 0
    # Regression first, diffusion on the residual (Mardani et al. 2023, arXiv 2309.15214): a
    # second U-Net (regression_channels wide; 0 = base_channels) draws the formula's mean image
    # from pixel coordinates with plain MSE (loss.regression_weight), and the denoiser, which
    # sees that mean, learns image - mean. Measured on tiny32_cpu: mathart/README.md.
    c.model.regression = False
    c.model.regression_channels = 0
    # The mean's network: "unet" (the U-Net above on pixel coordinates) or "field": every pixel
    # drawn by a residual MLP of its coordinates' Fourier features, FiLM-conditioned on the
    # formula (+ one attention to its tokens), field_* sized (mathart/models/field.py). Measured:
    # the same step cost as the 32-channel U-Net mean, lower MSE, equal recognition with the
    # geometry loss (mathart/README.md).
    c.model.regression_net = "unet"
    c.model.field_width = 128
    c.model.field_depth = 3
    c.model.field_frequencies = 5
    c.model.field_cross_attention = True
    # Train the regression mean alone (the denoiser is never run; samples are the mean): the
    # cheap first stage of a two-stage run, whose second stage starts from it with
    # --config.init_from=<this run> and model.regression=True. Measured: mathart/README.md.
    c.model.regression_only = False
    # Scale/shift of the U-Nets' output norm by the time(+formula, style) embedding: without it
    # the norm (one or two channels per group at 32-64 channels) removes each image's mean
    # colour, which then reaches the output only through the activation after it. Measured on
    # the regression mean: lower MSE, same recognition (mathart/README.md). Off, so runs made
    # before it existed keep loading.
    c.model.output_modulation = False
    # > 0: the formula encoder also reads each number's value, as Fourier features at this many
    # periods (1/16 ... 2^(n-5)) added to the number's token embedding (mathart.models.encoder),
    # so 2.6 and 2.65 are neighbours and an unseen value is not a stranger. 0: ids only, as
    # runs made before it. Measured on the regression mean: no change in recognition
    # (mathart/README.md).
    c.model.number_features = 0
    c.model.remat = False  # gradient checkpointing (nn.remat) of every ResBlock/attention block

    # --- diffusion (mathart.diffusion)
    c.diffusion = ml_collections.ConfigDict()
    c.diffusion.timesteps = 200  # ADR TIMESTEPS
    c.diffusion.prediction = "v"  # "v" | "eps"
    c.diffusion.cond_drop_prob = 0.1  # null formula (classifier-free guidance training)
    c.diffusion.style_drop_prob = 0.1  # unknown style, so sampling without a style works
    # Self-conditioning (Chen et al. 2023, "Analog Bits"): the U-Net also sees its previous x0
    # estimate (sampling: the last step's; training: its own first pass on this share of steps).
    # Measured on tiny32_cpu: lower loss, same recognition (mathart/README.md), so off.
    c.diffusion.self_condition = False
    c.diffusion.self_condition_prob = 0.5

    # --- losses (mathart.losses); seed 000: MSE 0.3, perceptual 0.4, math 0.2, colour 0.1
    c.loss = ml_collections.ConfigDict()
    c.loss.mse_weight = 0.3
    c.loss.perceptual_weight = 0.4
    c.loss.math_weight = 0.2
    c.loss.colour_weight = 0.1
    c.loss.regression_weight = 1.0  # MSE of the regression mean (with model.regression)
    # > 0: the regression mean's MSE on 1/2, 1/4, ... average-pooled copies is added (that many
    # levels; mathart.losses.pyramid_mse), so a curve drawn near its place is pulled onto it.
    c.loss.regression_pyramid_levels = 0
    # > 0: the regression mean is also trained on the geometry loss (math_loss: Sobel edges and
    # luminance, both by correlation, so a faint curve in the right place counts as much as a
    # bright one), with this weight inside regression_weight. MSE alone prefers no curve to a
    # curve that might be misplaced. Measured: mathart/README.md.
    c.loss.regression_math_weight = 0.0
    # > 0: the regression mean is also trained on the structural loss (multi-scale 1 - SSIM +
    # gradient L1, mathart.losses.structural_loss): SSIM compares local contrast and structure,
    # so a blur that only matches the mean colour earns nothing. Measured: mathart/README.md.
    c.loss.regression_structural_weight = 0.0
    c.loss.family_weight = 0.1  # family-classification head on the formula encoder (0 = off)
    c.loss.perceptual = "auto"  # "auto" (vgg16 if vgg_weights else structural) | explicit
    c.loss.vgg_weights = ""  # path to the published VGG16 weights (.h5 / .npz), optional
    c.loss.vgg_preprocessing = "auto"
    c.loss.colour_mode = "match"  # "match" (agree with the ground truth) | "concentration"
    # How the denoising term weights the T steps (mathart.diffusion.loss_step_weights):
    # "none" (plain v / eps loss) | "min_snr" (Min-SNR-γ, Hang et al. 2023) | "x0" (every
    # step's x0 error alike). Measured on tiny32_cpu: mathart/README.md.
    c.loss.step_weighting = "none"
    c.loss.min_snr_gamma = 5.0

    # --- sampling (hooks, mathart.sample, mathart.evaluate)
    c.sample = ml_collections.ConfigDict()
    c.sample.num_inference_steps = 50  # ADR NUM_INFERENCE_STEPS
    c.sample.sampler = "ddim"  # "ddim" | "ddpm" (ancestral)
    c.sample.eta = 0.0
    c.sample.guidance_scale = 3.0
    # Scale of the starting noise (mathart.generate.build_generator): 1 samples the model's
    # distribution; below 1 trades diversity for fidelity.
    c.sample.temperature = 1.0
    c.sample.clip_x0 = True
    c.sample.every_epochs = 5  # ADR GENERATE_SAMPLES_EVERY
    c.sample.grid_formulas = 16
    c.sample.retrieval_k = 10
    c.sample.grid_upscale = 4
    c.sample.seed = 0

    # --- optimisation and bookkeeping (ADR 0002)
    c.batch_size = 8
    c.learning_rate = 5e-5
    c.optim.name = "adamw"
    c.optim.weight_decay = 0.0
    c.optim.schedule = "constant"
    c.optim.grad_clip = 1.0
    c.max_epochs = 150.0
    c.checkpoint_every_epochs = 10.0
    c.eval_every_epochs = 1.0
    c.eval_batch_size = 100
    c.log_every_steps = 100
    c.ema_decay = 0.999

    if profile == "tiny32_cpu":
        # 2x2 patchify stem: the U-Net's top level runs at 16x16, 3 levels at 1/2, 1/4, 1/8
        # (faster per example than the same U-Net at 32x32, and 36 000 formulas recognised
        # better than 18 000: mathart/README.md's measured results).
        c.data.num_train = 36_000
        c.model.patch_size = 2
        c.model.base_channels = 64
        c.model.channel_mult = (1, 2, 2)
        c.model.num_res_blocks = 2
        c.model.time_emb_dim = 128
        c.model.cross_attention_scales = (2, 4, 8)
        c.model.self_attention_scales = (4, 8)
        c.model.embedding_dim = 128
        c.model.num_layers = 2
        c.model.mlp_size = 512
        c.batch_size = 32
        c.learning_rate = 1e-3
        c.optim.schedule = "warmup_cosine"
        c.optim.warmup_steps = 200
        c.optim.end_lr = 1e-5
        c.max_epochs = 3.0
        c.max_training_hours = 3.0  # safety net (saves and exits; rerunning resumes)
        c.sample.every_epochs = 1
        c.checkpoint_every_epochs = 1.0
        c.eval_every_epochs = 1.0
        c.log_every_steps = 50
    elif profile == "full512":
        c.data.image_size = 512
        c.data.num_train, c.data.num_val, c.data.num_test = 2_000, 200, 200
        c.model.embedding_dim, c.model.num_layers = 768, 12
        c.model.num_heads, c.model.mlp_size = 12, 3072
        c.model.base_channels = 320
        c.model.channel_mult = (1, 2, 4, 4)
        c.model.num_res_blocks = 2
        c.model.time_emb_dim = 1280
        c.model.patch_size = 4
        c.model.cross_attention_scales = (4, 8, 16)
        c.model.self_attention_scales = (8, 16)
        c.model.extra_skip_scales = (16, 32)
        c.model.attention_heads = 8
        c.model.remat = True
        c.dtype = "bfloat16"
        c.diffusion.timesteps = 1000
        c.batch_size = 16
        c.eval_batch_size = 16
        c.learning_rate = 1e-4
        c.optim.schedule = "cosine_restarts"
        c.optim.warmup_steps = 2000
        c.optim.restart_steps = 10_000
        c.optim.end_lr = 1e-6
        c.max_epochs = 100.0
        c.ema_decay = 0.9999
        c.sample.grid_upscale = 1
        c.sample.grid_formulas = 8
    elif profile == "smoke":
        c.data.image_size = 16
        c.data.num_train, c.data.num_val, c.data.num_test = 32, 12, 12
        c.model.vocab_size = 400
        c.model.embedding_dim, c.model.num_layers = 32, 1
        c.model.num_heads, c.model.mlp_size = 2, 64
        c.model.base_channels = 16
        c.model.channel_mult = (1, 2)
        c.model.num_res_blocks = 1
        c.model.time_emb_dim = 32
        c.model.cross_attention_scales = (2,)
        c.model.self_attention_scales = ()
        c.model.attention_heads = 2
        c.diffusion.timesteps = 20
        c.sample.num_inference_steps = 4
        c.sample.every_epochs = 1
        c.sample.grid_formulas = 4
        c.sample.retrieval_k = 4
        c.batch_size = 8
        c.eval_batch_size = 8
        c.learning_rate = 1e-3
        c.max_epochs = 2.0
        c.checkpoint_every_epochs = None
        c.log_every_steps = 2
        c.compilation_cache_dir = ""
    return c
