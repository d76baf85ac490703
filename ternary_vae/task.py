"""The ternary VAE as a `common.task.Task`: data, model, both stages' losses, eval, hooks.

One class serves both stages, chosen by ``config.stage``:

- ``"vae"`` (stage 0): encoder A + decoder as a plain VAE until every operation decodes
  (stands in for the reference's missing v5.5 checkpoint). Best checkpoint: val/coverage.
- ``"hyperbolic"`` (stage 1): encoder A and the decoder frozen, encoder B (a copy of A, see
  `init_from_params`) and both projections learn the 3-adic radial hierarchy. Best
  checkpoint: ``val/select`` = Q_B when coverage >= metrics.min_coverage (else < -2).

Freezing is the shared loop's per-group learning-rate scale (``param_groups`` +
``config.optim.lr_scales``); homeostasis changes the scales at run time through controls.
The curriculum is a pure function of ``ctx.step``. ``ternary_vae.two_stage`` chains the
stages in one command.
"""

import itertools
import logging
from collections.abc import Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from clu import metrics as clu_metrics

from common.config import ConfigError
from common.metrics import unmasked_rows
from common.task import Batch, Datasets, EvalSummary, HookContext, HookResult, StepContext, Task
from ternary_vae import hyperbolic, input_pipeline, losses, metrics
from ternary_vae.curriculum import Curriculum
from ternary_vae.homeostasis import Homeostasis, HomeostasisConfig
from ternary_vae.model import TernaryVAE, build_model
from ternary_vae.ternary import NUM_LEVELS

STAGE_VAE = "vae"
STAGE_HYPERBOLIC = "hyperbolic"
OUTPUT_NAMES = ("valuation", "index", "correct", "radius_a", "radius_b", "z_a", "z_b", "mask")
PARAM_GROUPS = {
    "encoder_a": r"^encoder_a/",
    "encoder_b": r"^encoder_b/",
    "decoder": r"^decoder/",
    "projections": r"^projection_[ab]/",
}


@flax.struct.dataclass
class EvalOutputs(clu_metrics.Collection):
    """Per-operation outputs of one eval batch; `summarize_eval` computes every metric."""

    outputs: clu_metrics.CollectingMetric.from_outputs(OUTPUT_NAMES)


class TernaryVaeTask(Task):
    """Stage 0 (VAE) or stage 1 (hyperbolic hierarchy) of the ternary VAE."""

    best_metric = ("val/select", "max")

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        self.stage = config.stage
        if self.stage not in (STAGE_VAE, STAGE_HYPERBOLIC):
            raise ConfigError(
                f"config.stage must be '{STAGE_VAE}' or '{STAGE_HYPERBOLIC}', got '{self.stage}'"
            )
        if self.stage == STAGE_VAE:
            self.best_metric = ("val/coverage", "max")
        self.model = build_model(config)
        self.ops = input_pipeline.load_operations(config)
        self.num_examples = len(self.ops["trits"])
        cur = config.curriculum
        self.curriculum = Curriculum(
            enabled=cur.enabled,
            coverage_first_epochs=cur.coverage_first_epochs,
            hierarchy_ramp_epochs=cur.hierarchy_ramp_epochs,
            richness_preserve_epochs=cur.richness_preserve_epochs,
            richness_boost=cur.richness_boost,
            geodesic_start_epoch=config.loss.geodesic_start_epoch,
        )
        scales = dict(config.optim.lr_scales)
        h = config.homeostasis
        self.homeostasis = Homeostasis(
            HomeostasisConfig(
                start_epoch=h.start_epoch,
                hysteresis_epochs=h.hysteresis_epochs,
                window=h.window,
                plateau_threshold=h.plateau_threshold,
                patience=h.patience,
                patience_max=h.patience_max,
                coverage_freeze_threshold=h.coverage_freeze_threshold,
                coverage_unfreeze_threshold=h.coverage_unfreeze_threshold,
                coverage_floor=h.coverage_floor,
                unfreeze_drop=h.unfreeze_drop,
                annealing=h.annealing,
                annealing_step=h.annealing_step,
                tighten_dq=h.tighten_dq,
                encoder_a_unfreeze_lr_scale=h.encoder_a_unfreeze_lr_scale,
                encoder_b_lr_scale=float(scales.get("encoder_b", 1.0)),
            ),
            encoder_a_frozen=float(scales.get("encoder_a", 1.0)) == 0.0,
            encoder_b_frozen=float(scales.get("encoder_b", 1.0)) == 0.0,
        )
        self.targets = np.asarray(
            losses.level_targets(config.loss.inner_radius, config.loss.outer_radius), np.float32
        )
        level_min = int(config.rare_level_min)
        self.rare = (
            input_pipeline.rare_levels(self.ops, level_min)
            if self.stage == STAGE_HYPERBOLIC and 0 <= level_min < NUM_LEVELS
            else None
        )

    # ---- data and variables -----------------------------------------------------------------
    def datasets(self) -> Datasets:
        return input_pipeline.build_datasets(self.config)

    def init_variables(self, rng: jax.Array, batch: Batch) -> dict[str, Any]:
        k_params, k_sample, k_drop = jax.random.split(rng, 3)
        variables = self.model.init(
            {"params": k_params, "sample": k_sample, "dropout": k_drop},
            jnp.asarray(batch["trits"], jnp.float32),
            train=False,
        )
        out: dict[str, Any] = {"params": variables["params"]}
        if self.stage == STAGE_HYPERBOLIC:
            # Within-level radius variance of the model stage 1 starts from (the richness
            # floor's reference), recorded by the first train step; see `_reference`.
            out["reference"] = {
                "radius_var_b": jnp.zeros((NUM_LEVELS,), jnp.float32),
                "recorded": jnp.zeros((), jnp.float32),
            }
        return out

    def param_groups(self) -> dict[str, str]:
        return dict(PARAM_GROUPS)

    def init_from_params(
        self, loaded: Any, fresh: Any, loaded_task_state: dict | None = None
    ) -> Any:
        """Stage 0 -> stage 1: keep encoder A and the decoder, copy A into B, fresh projections.
        (The loop then checks every shape against this config, naming the paths.)"""
        del loaded_task_state  # the stage-0 run keeps no host state this mapping needs
        for name in ("encoder_a", "decoder"):
            if name not in loaded:
                raise KeyError(
                    f"init_from checkpoint has no '{name}' params (has {sorted(loaded)}); "
                    "point --config.init_from at a ternary_vae stage-0 (or stage-1) run"
                )
        params = dict(fresh)
        params["encoder_a"] = loaded["encoder_a"]
        params["decoder"] = loaded["decoder"]
        params["encoder_b"] = jax.tree.map(jnp.copy, loaded["encoder_a"])
        return params

    # ---- training ---------------------------------------------------------------------------
    def loss_fn(self, params, batch, rng, ctx: StepContext):
        if self.stage == STAGE_VAE:
            return self._vae_loss(params, batch, rng)
        return self._hyperbolic_loss(params, batch, rng, ctx)

    def _vae_loss(self, params, batch, rng):
        k_sample, k_drop = jax.random.split(rng)
        x = jnp.asarray(batch["trits"], jnp.float32)
        out = self.model.apply(
            {"params": params},
            x,
            train=True,
            method=TernaryVAE.vae,
            rngs={"sample": k_sample, "dropout": k_drop},
        )
        s0 = self.config.stage0
        loss, mets = losses.vae_loss(out["logits"], x, out["mu_a"], out["logvar_a"], s0.kl_weight)
        return loss, (mets, None)

    def _reference(self, r_b, levels, weight, extras) -> dict[str, jax.Array]:
        """Per-level radius variance of B at the first stage-1 step (the richness reference).

        Taken from the first batch (with the rare levels appended, every level is present)
        and kept in the ``reference`` collection, so it is checkpointed and correct after
        init_from, resume or neither. The reference recomputes r0 for every batch from a copy
        of the initial model; a per-level variance fixed at step 0 is the same reference
        without a second model.
        """
        ref = extras["reference"]
        _, _, var = losses.level_stats(jax.lax.stop_gradient(r_b), levels, weight)
        cap = self.config.loss.richness_reference_cap
        if cap > 0:
            # A fresh projection can spread radii far wider than a level's band (we see
            # 0.03-0.08 per level); half of that as a floor would force levels to overlap.
            var = jnp.minimum(var, cap)
        recorded = ref["recorded"] > 0
        return {
            "radius_var_b": jnp.where(recorded, ref["radius_var_b"], var),
            "recorded": jnp.ones((), jnp.float32),
        }

    def _hyperbolic_loss(self, params, batch, rng, ctx: StepContext):
        cfg, w = self.config, self.config.loss
        c = cfg.model.curvature
        x = jnp.asarray(batch["trits"], jnp.float32)
        levels = jnp.asarray(batch["valuation"], jnp.int32)
        index = jnp.asarray(batch["index"], jnp.int32)
        if self.rare is not None:
            x = jnp.concatenate([x, jnp.asarray(self.rare["trits"])])
            levels = jnp.concatenate([levels, jnp.asarray(self.rare["valuation"])])
            index = jnp.concatenate([index, jnp.asarray(self.rare["index"])])
        weight = jnp.ones(x.shape[0], jnp.float32)
        keys = jax.random.split(rng, 8)
        out = self.model.apply(
            {"params": params},
            x,
            train=True,
            train_b=not w.deterministic_b,
            rngs={"sample": keys[0], "dropout": keys[1]},
        )
        r_a = hyperbolic.hyperbolic_radius(out["z_a"], c)
        r_b = hyperbolic.hyperbolic_radius(out["z_b"], c)
        reference = self._reference(r_b, levels, weight, ctx.extras)
        targets = jnp.asarray(self.targets)

        mult = self.curriculum.multipliers(ctx.epoch, ctx.total_epochs)
        coverage = 0.5 * (
            losses.coverage_ce(out["logits_hyp"], x, weight)
            + losses.coverage_ce(out["logits_mean"], x, weight)
        )
        profile = losses.profile_loss(
            r_b,
            levels,
            weight,
            targets=targets,
            reference_var=reference["radius_var_b"],
            min_ratio=w.richness_min_ratio,
            margin=w.separation_margin,
        )
        radial_kw = dict(
            targets=targets,
            band=w.radial_band,
            outer_cap=w.radial_outer_cap,
            rarity_exponent=w.radial_rarity_exponent,
            margin_weight=w.radial_margin_weight,
            num_pairs=w.radial_pairs,
        )
        radial = losses.radial_loss(r_a, levels, weight, keys[2], **radial_kw) + losses.radial_loss(
            r_b, levels, weight, keys[3], **radial_kw
        )
        rank_kw = dict(temperature=w.rank_temperature, num_pairs=w.rank_pairs)
        rank = losses.rank_loss(r_a, levels, weight, keys[4], **rank_kw) + losses.rank_loss(
            r_b, levels, weight, keys[5], **rank_kw
        )
        geo_kw = dict(curvature=c, num_pairs=w.geodesic_pairs)
        geodesic = losses.geodesic_loss(out["z_a"], index, weight, keys[6], **geo_kw)
        geodesic += losses.geodesic_loss(out["z_b"], index, weight, keys[7], **geo_kw)
        spread = losses.spread_loss(r_b, levels, weight, target_var=w.spread_target_var)

        total = (
            w.coverage * coverage
            + mult["hierarchy"]
            * (
                w.hierarchy * profile["hierarchy"]
                + w.separation * profile["separation"]
                + w.radial * radial
                + w.rank * rank
            )
            + mult["richness"] * w.richness * (profile["richness"] + w.spread * spread)
            + mult["geodesic"] * w.geodesic * geodesic
        )
        mets = {
            "coverage_ce": coverage,
            "hierarchy": profile["hierarchy"],
            "richness": profile["richness"],
            "separation": profile["separation"],
            "radial": radial,
            "rank": rank,
            "geodesic": geodesic,
            "spread": spread,
            "curriculum/hierarchy": mult["hierarchy"],
            "curriculum/richness": mult["richness"],
            "curriculum/geodesic": mult["geodesic"],
        }
        return total, (mets, {"reference": reference})

    # ---- evaluation -------------------------------------------------------------------------
    def eval_step(self, params, batch, ctx: StepContext) -> clu_metrics.Collection:
        x = jnp.asarray(batch["trits"], jnp.float32)
        out = self.model.apply({"params": params}, x, train=False)
        c = self.config.model.curvature
        labels = (jnp.rint(x) + 1).astype(jnp.int32)
        correct = jnp.all(jnp.argmax(out["logits_mean"], -1) == labels, axis=-1)
        return EvalOutputs.single_from_model_output(
            valuation=batch["valuation"],
            index=batch["index"],
            correct=correct,
            radius_a=hyperbolic.hyperbolic_radius(out["z_a"], c),
            radius_b=hyperbolic.hyperbolic_radius(out["z_b"], c),
            z_a=out["z_a"],
            z_b=out["z_b"],
            mask=batch["mask"],
        )

    def predict(self, params, extras, batch, rng) -> dict:
        """{"trits": [B, 9] in {-1, 0, 1}} -> the deterministic path evaluation measures:
        "z_a", "z_b" (points in the ball), "radius_a", "radius_b" (hyperbolic) and "decoded"
        (the trits decoded from z_a's mean, [B, 9] in {-1, 0, 1})."""
        del extras, rng
        x = jnp.asarray(batch["trits"], jnp.float32)
        out = self.model.apply({"params": params}, x, train=False)
        c = self.config.model.curvature
        return {
            "z_a": out["z_a"],
            "z_b": out["z_b"],
            "radius_a": hyperbolic.hyperbolic_radius(out["z_a"], c),
            "radius_b": hyperbolic.hyperbolic_radius(out["z_b"], c),
            "decoded": jnp.argmax(out["logits_mean"], -1).astype(jnp.int32) - 1,
        }

    def summarize_eval(self, split: str, computed: Mapping[str, Any]) -> EvalSummary:
        outputs = unmasked_rows(computed["outputs"])
        m = self.config.metrics
        scalars = metrics.comprehensive(
            outputs,
            dist_corr_samples=m.dist_corr_samples,
            dist_corr_seed=m.dist_corr_seed,
            min_coverage=m.min_coverage,
            separation_margin=m.separation_margin,
        )
        return EvalSummary(scalars=scalars)

    # ---- hooks ------------------------------------------------------------------------------
    def on_eval(self, ctx: HookContext) -> HookResult | None:
        res = ctx.eval_results.get(input_pipeline.EVAL_SPLIT)
        if res is None:
            return None
        n_ok = round(res["coverage"] * self.num_examples)
        if self.stage == STAGE_VAE:
            target = self.config.stage0.target_coverage
            msg = (
                f"stage 0, epoch {ctx.epoch}: coverage {res['coverage']:.5f} "
                f"({n_ok}/{self.num_examples})"
            )
            if res["coverage"] >= target and ctx.epoch >= self.config.stage0.min_epochs:
                return HookResult(stop_training=True, message=f"{msg} >= {target}: stage 0 done")
            return HookResult(message=msg)

        phase = self.curriculum.phase(ctx.epoch - 0.5, ctx.total_steps / ctx.steps_per_epoch)
        summary = (
            f"epoch {ctx.epoch} [{phase}]: coverage "
            f"{res['coverage']:.5f} ({n_ok}/{self.num_examples}) | H_B {res['hierarchy_b']:.5f} "
            f"(ceiling {res['hierarchy_ceiling']:.5f} for distinct radii; "
            f"{int(res['unique_radii_b'])} unique) | richness_B {res['richness_b']:.5f} | "
            f"overlap_B {res['separation_b/discordant']:.2e} | Q_B {res['q_b']:.4f} | "
            f"H_A {res['hierarchy_a']:.4f}"
        )
        scalars: dict[str, float] = {}
        controls = None
        if self.config.homeostasis.enabled:
            changes = self.homeostasis.update(
                epoch=float(ctx.epoch),
                coverage=res["coverage"],
                h_a=res["hierarchy_a"],
                h_b=res["hierarchy_b"],
                q=res["q_b"],
            )
            scales = self.homeostasis.lr_scales()
            controls = {f"lr_scale/{k}": v for k, v in scales.items()}
            s = self.homeostasis.state
            scalars = {
                "homeostasis/encoder_a_frozen": float(s.encoder_a.frozen),
                "homeostasis/encoder_b_frozen": float(s.encoder_b.frozen),
                "homeostasis/coverage_freeze_threshold": s.freeze_threshold,
                "homeostasis/coverage_unfreeze_threshold": s.unfreeze_threshold,
                "homeostasis/patience_b": float(s.patience_b),
            }
            if changes:
                summary += "\n  homeostasis: " + "\n  homeostasis: ".join(changes)
        return HookResult(controls=controls, scalars=scalars, message=summary)

    def state_dict(self) -> dict[str, Any]:
        return {"homeostasis": self.homeostasis.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "homeostasis" in state:
            self.homeostasis.load_state_dict(state["homeostasis"])
            logging.info("homeostasis restored: %s", self.homeostasis.lr_scales())

    def flops_per_example(self) -> float | None:
        """Forward matmul FLOPs x 3 (forward + backward) per training example; stage 1 also
        runs the appended rare-level rows, counted here per batch example."""
        m = self.config.model

        def mlp(widths):
            return sum(2 * a * b for a, b in itertools.pairwise(widths))

        enc = mlp([9, *m.encoder_widths]) + 2 * 2 * m.encoder_widths[-1] * m.latent_dim
        dec = mlp([m.latent_dim, *m.decoder_widths, 27])
        radius_hidden = max(32, m.hidden_dim // 2)
        proj = mlp([m.latent_dim, m.hidden_dim, m.latent_dim]) + mlp(
            [m.latent_dim, radius_hidden, 1]
        )
        if self.stage == STAGE_VAE:
            return 3.0 * (enc + dec)
        extra_rows = 0 if self.rare is None else len(self.rare["trits"])
        rows_per_example = 1.0 + extra_rows / int(self.config.batch_size)
        return 3.0 * (2 * enc + 2 * dec + 2 * proj) * rows_per_example
