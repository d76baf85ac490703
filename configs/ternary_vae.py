"""Hyperbolic ternary VAE, v5.12.5 design (seed 003): all 3^9 ternary operations in a Poincaré ball.

    python -m ternary_vae.main --config=configs/ternary_vae.py:mathematical_foundation --workdir=W
    python -m ternary_vae.main --config=configs/ternary_vae.py:hierarchy_focused --workdir=W
    python -m ternary_vae.main --config=configs/ternary_vae.py:test_mode --workdir=W   # 5 epochs
    python -m ternary_vae.main --config=configs/ternary_vae.py --config.init_from=W/stage0 ...
    python -m ternary_vae.geometry_budget     # the numbers behind the feasibility argument
    python -m ternary_vae.analyze W           # best + latest: all metrics, PNG figures

One command runs stage 0 (VAE to 100 % coverage, in W/stage0) and stage 1 (W); with
``--config.init_from`` pointing at a stage-0 run, stage 0 is skipped.

Profiles (loss weights coverage / hierarchy / richness / separation, from the seed's guide
and the 5.12.5 script's MATHEMATICAL_PROFILES):
    mathematical_foundation  1.0 / 5.0 / 2.5 / 3.0   (default)
    coverage_focused        10.0 / 0.1 / 0.1 / 0.1
    hierarchy_focused        1.0 / 8.0 / 0.5 / 1.0
    richness_focused         1.0 / 3.0 / 5.0 / 2.0
    test_mode                mathematical_foundation for 5 epochs (curriculum scaled down)
    smoke                    tiny model, a few steps per stage (tests)

Where the seed's numbers went: model.latent_dim 16, model.hidden_dim 64, model.curvature 1.0,
model.max_radius 0.95; training.epochs 120 -> max_epochs, batch_size 512, lr 8e-4 ->
learning_rate; scheduler mathematical_cosine (warmup_epochs 5, T_0 25, T_mult 1.5, eta_min 1e-6)
-> optim.schedule="cosine_restarts" with optim.warmup_epochs, optim.restart_epochs,
optim.restart_mult, optim.end_lr; encoder_a_lr_scale 0.0 and encoder_b_lr_scale 0.1 ->
optim.lr_scales.encoder_a / encoder_b; curriculum.* (30 / 50 / 20 epochs) -> curriculum.*;
homeostasis (annealing_step 0.003, annealing_patience 5) -> homeostasis.*; targets (coverage
1.0, hierarchy_B -0.8321, richness 0.006) -> ternary_vae/README.md. The seed's Q_enhanced >= 2.0
target is unreachable by its own formula; selection uses Q_B instead.
"""

import ml_collections

from common.config import P, base_config, parse_profile

PROFILES = (
    "mathematical_foundation",
    "coverage_focused",
    "hierarchy_focused",
    "richness_focused",
    "test_mode",
    "smoke",
)

# coverage, hierarchy, richness, separation
PROFILE_WEIGHTS = {
    "mathematical_foundation": (1.0, 5.0, 2.5, 3.0),
    "coverage_focused": (10.0, 0.1, 0.1, 0.1),
    "hierarchy_focused": (1.0, 8.0, 0.5, 1.0),
    "richness_focused": (1.0, 3.0, 5.0, 2.0),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    profile = parse_profile(
        arg,
        choices=PROFILES,
        default="mathematical_foundation",
        config_file="configs/ternary_vae.py",
    )
    c = base_config()
    c.task = "ternary_vae.task:TernaryVaeTask"
    c.profile = profile
    c.stage = "hyperbolic"  # "hyperbolic" (stage 1, preceded by stage 0) | "vae" (stage 0 only)

    # --- data: all 19,683 operations, no split (train and evaluate on all)
    c.data_file = P(str)  # optional .npy [M, 9] of trits in {-1,0,1}: train on your own rows
    c.rare_level_min = 4  # stage 1 appends every operation with v3 >= this to each batch
    c.batch_size = 512
    c.eval_batch_size = 4096  # 5 padded batches cover all operations
    c.max_epochs = 120.0
    c.eval_every_epochs = 1.0
    c.log_every_steps = 38  # one line per epoch (19,683 // 512 = 38 steps)
    c.final_eval_splits = ("val",)  # final metrics = the best (selected) checkpoint

    # --- model
    c.model = ml_collections.ConfigDict()
    c.model.latent_dim = 16
    c.model.hidden_dim = 64  # projection MLP width (radius net: max(32, hidden_dim // 2))
    c.model.encoder_widths = (256, 128, 64)
    c.model.decoder_widths = (32, 64)
    c.model.dropout = 0.1
    c.model.logvar_min = -10.0
    c.model.logvar_max = 2.0
    c.model.first_bias_std = 1.0  # N(0,1) first-layer bias: the all-zero operation decodes (README)
    c.model.max_radius = 0.95  # Euclidean; hyperbolic radius <= 2 artanh(0.95) = 3.664
    c.model.curvature = 1.0

    # --- optimiser: "mathematical_cosine"
    c.learning_rate = 8e-4
    c.optim.name = "adamw"
    c.optim.weight_decay = 5e-5
    c.optim.grad_clip = 0.8
    c.optim.schedule = "cosine_restarts"
    c.optim.warmup_epochs = 5.0
    c.optim.restart_epochs = 25.0
    c.optim.restart_mult = 1.5
    c.optim.end_lr = 1e-6
    # Partial freeze (option C): encoder A and decoder frozen, B slower, projections full lr.
    c.optim.lr_scales = ml_collections.ConfigDict()
    c.optim.lr_scales.encoder_a = 0.0  # the seed's encoder_a_lr_scale
    c.optim.lr_scales.encoder_b = 0.1  # the seed's encoder_b_lr_scale (homeostasis unfreezes to it)
    c.optim.lr_scales.decoder = 0.0
    c.optim.lr_scales.projections = 1.0

    # --- stage-1 losses (hyperbolic units for radii)
    w = PROFILE_WEIGHTS.get(profile, PROFILE_WEIGHTS["mathematical_foundation"])
    c.loss = ml_collections.ConfigDict()
    c.loss.coverage, c.loss.hierarchy, c.loss.richness, c.loss.separation = w
    c.loss.richness_min_ratio = 0.5  # floor on Var(r|v) / Var(r0|v), r0 = radii at the start
    c.loss.richness_reference_cap = 0.0075  # Var(r0|v) capped here (0 = uncapped)
    c.loss.separation_margin = 0.01
    c.loss.inner_radius = 0.1  # level targets tau_v = outer - v/9 (outer - inner): spacing 0.35
    c.loss.outer_radius = 3.25
    c.loss.radial = 1.0
    c.loss.radial_band = 0.15  # dead band around tau_v: within-level spread is free
    c.loss.radial_outer_cap = 3.55  # level 0's band reaches out to here (ball edge: 3.66)
    c.loss.radial_rarity_exponent = 0.4
    c.loss.radial_margin_weight = 0.5
    c.loss.radial_pairs = 1000
    c.loss.rank = 0.5
    c.loss.rank_temperature = 0.1
    c.loss.rank_pairs = 2000
    c.loss.geodesic = 0.3
    c.loss.geodesic_start_epoch = 30.0
    c.loss.geodesic_pairs = 2000
    c.loss.spread = 0.4  # x the profile's richness weight (2.5 -> 1.0 in the default profile)
    # Fit B on its deterministic path (mu, no dropout): the radii evaluation measures.
    c.loss.deterministic_b = True
    c.loss.spread_target_var = 0.0068  # per level; uniform in +-0.15 has 0.0075

    # --- curriculum (multipliers on the weights; ternary_vae/curriculum.py)
    c.curriculum = ml_collections.ConfigDict()
    c.curriculum.enabled = True
    c.curriculum.coverage_first_epochs = 30.0
    c.curriculum.hierarchy_ramp_epochs = 50.0
    c.curriculum.richness_preserve_epochs = 20.0
    c.curriculum.richness_boost = 1.5
    c.loss.geodesic_start_epoch = c.curriculum.get_ref("coverage_first_epochs")

    # --- homeostasis (ternary_vae/homeostasis.py)
    c.homeostasis = ml_collections.ConfigDict()
    c.homeostasis.enabled = True
    c.homeostasis.start_epoch = 35.0  # warm-up: plateaus only count once hierarchy terms act
    c.homeostasis.hysteresis_epochs = 3.0
    c.homeostasis.window = 5
    c.homeostasis.plateau_threshold = 0.001
    c.homeostasis.patience = 5  # the YAML's annealing_patience
    c.homeostasis.patience_max = 15
    c.homeostasis.coverage_freeze_threshold = 0.995
    c.homeostasis.coverage_unfreeze_threshold = 1.0
    c.homeostasis.coverage_floor = 0.95
    c.homeostasis.unfreeze_drop = 0.01
    c.homeostasis.annealing = True
    c.homeostasis.annealing_step = 0.003
    c.homeostasis.tighten_dq = 0.05
    c.homeostasis.encoder_a_unfreeze_lr_scale = 0.05

    # --- metrics and checkpoint selection
    c.metrics = ml_collections.ConfigDict()
    c.metrics.dist_corr_samples = 1000
    c.metrics.dist_corr_seed = 0
    c.metrics.min_coverage = 0.9999  # val/select = Q_B only above this coverage
    c.metrics.separation_margin = 0.01

    # --- stage 0: encoder A + decoder as a VAE until every operation decodes
    c.stage0 = ml_collections.ConfigDict()
    c.stage0.max_epochs = 40.0
    c.stage0.max_steps = P(int)  # overrides max_epochs when set
    c.stage0.learning_rate = 2e-3
    c.stage0.warmup_epochs = 1.0
    c.stage0.kl_weight = 0.01
    # Dropout off in stage 0: with 0.1, the all-zero operation (index 9841) is often the one
    # operation that never decodes from mu (19,682/19,683); see ternary_vae/README.md.
    c.stage0.dropout = 0.0
    c.stage0.grad_clip = P(float)  # None: the summed CE's gradients are large early on
    c.stage0.target_coverage = 1.0  # stop stage 0 once reached
    c.stage0.min_epochs = 0.0
    # What else stage 0 changes from this config (ternary_vae/two_stage.py applies it all): its
    # own warmup-cosine schedule to 0 without weight decay, only encoder A and the decoder
    # trained, the best checkpoint by coverage, no early stopping and no final evaluation.
    c.stage0.schedule = "warmup_cosine"
    c.stage0.end_lr = 0.0
    c.stage0.weight_decay = 0.0
    c.stage0.lr_scales = ml_collections.ConfigDict(
        {"encoder_a": 1.0, "decoder": 1.0, "encoder_b": 0.0, "projections": 0.0}
    )
    c.stage0.best_metric = "val/coverage"

    if profile == "test_mode":
        c.max_epochs = 5.0
        c.optim.warmup_epochs = 1.0
        c.optim.restart_epochs = 2.0
        c.curriculum.coverage_first_epochs = 1.0
        c.curriculum.hierarchy_ramp_epochs = 2.0
        c.curriculum.richness_preserve_epochs = 1.0
        c.homeostasis.start_epoch = 2.0
        c.stage0.max_epochs = 10.0
    elif profile == "smoke":
        c.model.encoder_widths = (32, 16)
        c.model.decoder_widths = (16,)
        c.model.latent_dim = 4
        c.model.hidden_dim = 16
        c.max_epochs = None
        c.max_steps = 6
        c.eval_every_steps = 3
        c.log_every_steps = 3
        c.optim.warmup_epochs = None
        c.optim.warmup_steps = 1
        c.optim.restart_epochs = None
        c.optim.restart_steps = 2
        c.curriculum.coverage_first_epochs = 0.05
        c.curriculum.hierarchy_ramp_epochs = 0.05
        c.curriculum.richness_preserve_epochs = 0.05
        c.homeostasis.start_epoch = 0.0
        c.loss.radial_pairs = 64
        c.loss.rank_pairs = 64
        c.loss.geodesic_pairs = 64
        c.metrics.dist_corr_samples = 200
        c.stage0.max_steps = 4
        c.compilation_cache_dir = ""
    return c
