"""Formula-conditioned diffusion on the shared loop: the mathart family's `Task`.

Training step (`loss_fn`), for a batch of (image x0, formula tokens, style):
  t ~ U{0..T-1}, eps ~ N(0, I), x_t = alpha_t x0 + sigma_t eps (`mathart.diffusion`);
  10 % of rows see the null formula (classifier-free guidance), 10 % an unknown style;
  the network predicts v (or eps); x0_hat follows from it. With diffusion.self_condition, on a
  share diffusion.self_condition_prob of the steps the network first estimates x0 without help
  and then sees that estimate (no gradient through it) beside x_t, as it will while sampling.
  loss = w_mse * m_t * mean |out - target|²   (m_t: loss.step_weighting, 1 unless set)
       + mean_b ᾱ_t(b) * (w_perc * perceptual(x0_hat, x0) + w_math * math(x0_hat, x0)
                          + w_colour * colour(x0_hat, x0))
       + w_family * CE(family head, family)
The image-space terms are weighted by ᾱ_t (= SNR / (1 + SNR)): at high noise x0_hat is
necessarily a blurry mean, and asking it to be sharp or on-palette there would fight the
diffusion objective. Definitions of each term: `mathart.losses`.

Evaluation (`eval_step`) uses fixed noise and a stratified grid of t per batch row, so
``val/mse`` (the checkpoint metric) is deterministic. Every ``config.sample.every_epochs``
epochs `on_epoch_end` samples fixed validation formulas with the EMA params (the loop hands
them to hooks) and returns a grid of [generated | ground truth] pairs plus quick scores
(`mathart.image_metrics`); the loop writes it to TensorBoard and as PNG.
"""

import functools
import logging
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from clu import metrics as clu_metrics

from common.config import due, steps_from
from common.task import Datasets, EvalSummary, HookContext, HookResult, StepContext, Task
from mathart import diffusion, image_metrics, input_pipeline, losses, transfer
from mathart.formula import Tokenizer
from mathart.generate import captioned_pairs, generator_from_config, to_uint8
from mathart.models import MathArtDenoiser, build_model, forward_flops, num_families_of
from mathart.models import vgg16 as vgg_lib
from mathart.models.denoiser import REGRESSION_NETS

PERCEPTUAL = ("auto", "structural", "vgg16")
# Image losses the regression mean may add to its MSE: metric name -> (its config.loss weight,
# the loss). One table, so the step computes and weighs exactly the configured ones.
MEAN_IMAGE_LOSSES = {
    "regression_math": ("regression_math_weight", losses.math_loss),
    "regression_structural": ("regression_structural_weight", losses.structural_loss),
}


def tokenizer_from_meta(meta: dict) -> Tokenizer:
    """The tokenizer a run trained with, from a checkpoint's meta (see `MathArtTask.state_dict`)."""
    state = meta.get("task_state") or {}
    if "tokenizer" not in state:
        raise ValueError(
            "this checkpoint carries no tokenizer (meta['task_state']['tokenizer']); it was not "
            "written by mathart.task.MathArtTask"
        )
    return Tokenizer.from_json(state["tokenizer"])


@functools.cache
def eval_metrics_class(names: tuple[str, ...]) -> type[clu_metrics.Collection]:
    """The clu Collection averaging the loss terms ``names`` (which depend on the config: the
    family head, the regression mean); one class per set of names, so every eval batch's
    metrics merge."""
    return clu_metrics.Collection.create(
        **{name: clu_metrics.Average.from_output(name) for name in names}
    )


class MathArtTask(Task):
    """Formula (+ style) -> image diffusion: data, model, losses, eval and sample grids."""

    best_metric = ("val/mse", "min")
    resume_safe_keys = ("sample.",)  # when and how sample grids are drawn

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        self.num_families = num_families_of(config)
        self.model = build_model(config, self.num_families)
        self.schedule = diffusion.cosine_schedule(config.diffusion.timesteps)
        diffusion.require_choice(
            config.diffusion.prediction, diffusion.PREDICTIONS, "config.diffusion.prediction"
        )
        diffusion.require_choice(
            config.loss.step_weighting, diffusion.STEP_WEIGHTINGS, "config.loss.step_weighting"
        )
        # None when off: the default train step stays exactly the graph the README measured,
        # without a gather and a multiply by ones in every step.
        self.mse_step_weights = (
            None
            if config.loss.step_weighting == "none"
            else diffusion.loss_step_weights(
                self.schedule,
                config.loss.step_weighting,
                config.diffusion.prediction,
                config.loss.min_snr_gamma,
            )
        )
        d = config.diffusion
        if d.self_condition and not 0.0 < d.self_condition_prob <= 1.0:
            raise ValueError(
                "config.diffusion.self_condition_prob must be in (0, 1] (the share of training "
                f"steps that see the model's own x0 estimate), got {d.self_condition_prob}"
            )
        if config.loss.colour_mode not in losses.COLOUR_MODES:
            raise ValueError(
                f"config.loss.colour_mode '{config.loss.colour_mode}' unknown; choose one of: "
                f"{', '.join(losses.COLOUR_MODES)}"
            )
        if config.model.regression_net not in REGRESSION_NETS:
            raise ValueError(
                f"config.model.regression_net '{config.model.regression_net}' unknown; choose "
                f"one of: {', '.join(REGRESSION_NETS)}"
            )
        if config.data.number_tokens == "shared" and config.model.number_features <= 0:
            raise ValueError(
                "config.data.number_tokens='shared' writes every number as the one piece <num>, "
                "so the model needs its value: set config.model.number_features (e.g. 10) or "
                "use number_tokens='whole'"
            )
        if config.model.regression_only:
            if not config.model.regression:
                raise ValueError(
                    "config.model.regression_only trains the regression mean alone and needs "
                    "config.model.regression=True"
                )
            # Nothing but the mean trains: its held-out error picks the best checkpoint.
            self.best_metric = ("val/regression_mse", "min")
        self.perceptual, self._vgg = self._resolve_perceptual(config)
        self._data: input_pipeline.MathArtData | None = None
        self._grid: dict[str, Any] | None = None
        self._generators: dict[bool, Any] = {}

    # ---- data ------------------------------------------------------------------------------
    @staticmethod
    def _resolve_perceptual(config) -> tuple[str, tuple[Any, str] | None]:
        """Which perceptual loss runs, said once in the log: never a silent switch."""
        choice, path = config.loss.perceptual, config.loss.vgg_weights
        if choice not in PERCEPTUAL:
            raise ValueError(
                f"config.loss.perceptual '{choice}' unknown; choose one of: {', '.join(PERCEPTUAL)}"
            )
        if config.loss.perceptual_weight <= 0:
            logging.info("perceptual loss: off (loss.perceptual_weight = 0)")
            return "off", None
        if choice == "vgg16" and not path:
            raise ValueError(
                "config.loss.perceptual='vgg16' needs config.loss.vgg_weights (a Keras .h5 or "
                ".npz of the published VGG16 weights; see mathart/models/vgg16.py)"
            )
        if choice == "structural" and path:
            raise ValueError(
                f"config.loss.vgg_weights='{path}' is set but loss.perceptual='structural'; "
                "clear one of them"
            )
        if path:
            params, pre = vgg_lib.load_vgg16_weights(path, config.loss.vgg_preprocessing)
            logging.info(
                "perceptual loss: VGG16 feature distance, weights %s (%s input)", path, pre
            )
            return "vgg16", (params, pre)
        logging.info(
            "perceptual loss: weight-free structural loss (multi-scale SSIM + gradients); set "
            "loss.vgg_weights to use VGG16 features"
        )
        return "structural", None

    def data(self) -> input_pipeline.MathArtData:
        if self._data is None:
            self._data = input_pipeline.load_data(self.config)
        return self._data

    def datasets(self) -> Datasets:
        return input_pipeline.build_datasets(self.config, self.data())

    def synthetic_batch(self, global_batch_size: int, rng: np.random.Generator) -> dict:
        """Random batch of the real shapes (for `common.bench` without rendering a dataset)."""
        r, length = self.config.data.image_size, self.config.model.max_formula_tokens
        tokens = rng.integers(4, 200, (global_batch_size, length)).astype(np.int32)
        tokens[:, length // 2 :] = 0
        numbers = np.where(
            rng.random(tokens.shape) < 0.2, rng.uniform(-5, 5, tokens.shape), np.nan
        ).astype(np.float32)
        return {
            "image": rng.integers(0, 256, (global_batch_size, r, r, 3)).astype(np.uint8),
            "tokens": tokens,
            "numbers": numbers,
            "family": rng.integers(0, max(self.num_families, 1), global_batch_size).astype(
                np.int32
            ),
            "style": input_pipeline.style_features(np.arange(global_batch_size)),
        }

    # ---- model -----------------------------------------------------------------------------
    def init_variables(self, rng: jax.Array, batch: dict) -> dict[str, Any]:
        x = jnp.zeros(batch["image"].shape, jnp.float32)
        t_frac = jnp.ones((x.shape[0],), jnp.float32)
        tokens = jnp.asarray(batch["tokens"])
        variables = dict(
            self.model.init(
                rng,
                x,
                t_frac,
                tokens,
                tokens != 0,
                jnp.asarray(batch["style"]),
                numbers=jnp.asarray(batch["numbers"]),
            )
        )
        if self._vgg is not None:  # frozen: an extras collection, never in the optimiser
            variables["vgg"] = self._vgg[0]["params"]
        return variables

    def _self_condition_input(self, denoise, x_t, t, use) -> jax.Array | None:
        """The x0 estimate a self-conditioned model sees (Chen et al. 2023, §2.2): on a
        ``use`` step, the model's own clipped estimate from a first pass with none, as a
        constant (no gradient flows through it); otherwise zeros, what the sampler's first step
        sees. ``use`` is a traced coin (training: one per batch, so `lax.cond` runs the first
        pass only when it lands) or a Python bool. None when self-conditioning is off."""
        if not self.config.diffusion.self_condition:
            return None

        def estimate(_):
            out = denoise(None)
            x0_hat, _ = diffusion.predict_x0_eps(
                self.schedule, x_t, t, out, self.config.diffusion.prediction
            )
            return jax.lax.stop_gradient(jnp.clip(x0_hat, -1.0, 1.0))

        if isinstance(use, bool):
            return estimate(None) if use else jnp.zeros_like(x_t)
        return jax.lax.cond(use, estimate, lambda _: jnp.zeros_like(x_t), None)

    def _terms(
        self, params, extras, batch, t, noise, drop, style_drop, self_cond=False
    ) -> dict[str, jax.Array]:
        """Per-example loss terms [B] (float32) at steps ``t`` with noise ``noise``;
        ``self_cond``: whether this pass sees the model's own x0 estimate (if configured)."""
        c = self.config
        x0 = batch["image"].astype(jnp.float32) / 127.5 - 1.0
        tokens = batch["tokens"]
        style = jnp.where(style_drop[:, None], 0.0, batch["style"])
        t_frac = (t.astype(jnp.float32) + 1.0) / self.schedule.num_timesteps

        variables = {"params": params}
        # The formula is encoded once; only the U-Net runs twice with self-conditioning.
        cond, formula, family_logits = self.model.apply(
            variables,
            tokens,
            tokens != 0,
            style,
            drop,
            batch["numbers"],
            method=MathArtDenoiser.training_conditions,
        )
        terms = {}
        if c.model.regression:
            mean = self.model.apply(
                variables, formula, x0.shape, method=MathArtDenoiser.regression_mean
            )
            terms["regression_mse"] = jnp.mean((mean - x0) ** 2, axis=(1, 2, 3))
            if c.loss.regression_pyramid_levels > 0:
                terms["regression_pyramid"] = losses.pyramid_mse(
                    mean, x0, c.loss.regression_pyramid_levels
                )
            for term, (weight_key, loss) in MEAN_IMAGE_LOSSES.items():
                if c.loss[weight_key] > 0:
                    terms[term] = loss(mean, x0)
            if c.model.regression_only:
                return self._mean_only_terms(terms, family_logits, batch)
            # Diffusion on the residual: its loss does not pull the mean (trained by its own
            # losses alone, as a separate network would be), and the denoiser sees the mean.
            mean = jax.lax.stop_gradient(mean)
            x0_full, x0 = x0, x0 - mean
        x_t = diffusion.q_sample(self.schedule, x0, t, noise)

        def denoise(x0_prev):
            return self.model.apply(
                variables, x_t, t_frac, cond, x0_prev, method=MathArtDenoiser.denoise
            )

        second_input = (
            mean if c.model.regression else self._self_condition_input(denoise, x_t, t, self_cond)
        )
        out = denoise(second_input)
        target = diffusion.training_target(self.schedule, x0, noise, t, c.diffusion.prediction)
        x0_hat, _ = diffusion.predict_x0_eps(self.schedule, x_t, t, out, c.diffusion.prediction)
        if c.model.regression:  # from here on, images: the mean plus the residual
            x0_hat, x0 = mean + x0_hat, x0_full
        weight = self.schedule.alphas_cumprod[t]  # ᾱ_t: image-space terms fade at high noise
        terms["mse"] = jnp.mean((out - target) ** 2, axis=(1, 2, 3))
        terms["x0_mse"] = jnp.mean((x0_hat - x0) ** 2, axis=(1, 2, 3))
        zero = jnp.zeros_like(terms["mse"])
        if self.perceptual == "structural":
            terms["perceptual"] = weight * losses.structural_loss(x0_hat, x0)
        elif self.perceptual == "vgg16":
            net = vgg_lib.VGG16Features(preprocessing=self._vgg[1])
            feats = lambda img: net.apply({"params": extras["vgg"]}, img)
            terms["perceptual"] = weight * losses.vgg_perceptual_loss(feats, x0_hat, x0)
        else:
            terms["perceptual"] = zero
        terms["math"] = weight * losses.math_loss(x0_hat, x0) if c.loss.math_weight > 0 else zero
        terms["colour"] = (
            weight * losses.colour_loss(x0_hat, x0, c.loss.colour_mode)
            if c.loss.colour_weight > 0
            else zero
        )
        terms.update(self._family_terms(family_logits, batch))
        w = c.loss
        mse = (
            terms["mse"]
            if self.mse_step_weights is None
            else self.mse_step_weights[t] * terms["mse"]
        )
        terms["loss"] = (
            w.mse_weight * mse
            + w.perceptual_weight * terms["perceptual"]
            + w.math_weight * terms["math"]
            + w.colour_weight * terms["colour"]
            + (w.family_weight * terms["family_ce"] if "family_ce" in terms else 0.0)
            + (w.regression_weight * self._regression_error(terms) if c.model.regression else 0.0)
        )
        return terms

    @staticmethod
    def _family_terms(family_logits, batch) -> dict[str, jax.Array]:
        """The family head's cross-entropy and accuracy (rows of unknown family count 0)."""
        if family_logits is None:
            return {}
        labels = batch["family"]
        known = labels >= 0
        ce = losses.family_cross_entropy(family_logits, jnp.maximum(labels, 0))
        return {
            "family_ce": jnp.where(known, ce, 0.0),
            "family_accuracy": jnp.where(
                known, (family_logits.argmax(-1) == labels).astype(jnp.float32), 0.0
            ),
        }

    def _regression_error(self, terms) -> jax.Array:
        """What trains the regression mean: its MSE, plus the pooled levels' and the weighted
        geometry and structural losses when configured."""
        w = self.config.loss
        error = terms["regression_mse"] + terms.get("regression_pyramid", 0.0)
        for term, (weight_key, _) in MEAN_IMAGE_LOSSES.items():
            error = error + w[weight_key] * terms.get(term, 0.0)
        return error

    def _mean_only_terms(self, terms, family_logits, batch) -> dict[str, jax.Array]:
        """model.regression_only: the regression MSE (+ the family head) is the whole loss;
        the denoiser's terms are absent, not zero, so no log shows a loss that was not run."""
        terms.update(self._family_terms(family_logits, batch))
        w = self.config.loss
        terms["loss"] = w.regression_weight * self._regression_error(terms) + (
            w.family_weight * terms["family_ce"] if "family_ce" in terms else 0.0
        )
        return terms

    def loss_fn(self, params, batch, rng, ctx: StepContext):
        b = batch["image"].shape[0]
        k_t, k_noise, k_drop, k_style = jax.random.split(rng, 4)
        t = jax.random.randint(k_t, (b,), 0, self.schedule.num_timesteps)
        noise = jax.random.normal(k_noise, batch["image"].shape, jnp.float32)
        drop = jax.random.bernoulli(k_drop, self.config.diffusion.cond_drop_prob, (b,))
        style_drop = jax.random.bernoulli(k_style, self.config.diffusion.style_drop_prob, (b,))
        self_cond = False
        if self.config.diffusion.self_condition:  # its own key: other draws stay as they were
            self_cond = jax.random.bernoulli(
                jax.random.fold_in(rng, 5), self.config.diffusion.self_condition_prob
            )
        terms = self._terms(params, ctx.extras, batch, t, noise, drop, style_drop, self_cond)
        metrics = {k: jnp.mean(v) for k, v in terms.items()}
        if "perceptual" in metrics:  # named by the perceptual loss that ran
            metrics[f"perceptual_{self.perceptual}"] = metrics.pop("perceptual")
        return metrics["loss"], (metrics, ctx.extras)

    def eval_step(self, params, batch, ctx: StepContext) -> clu_metrics.Collection:
        b = batch["image"].shape[0]
        T = self.schedule.num_timesteps
        # A stratified grid of noise levels and fixed noise: the same numbers every eval.
        t = ((jnp.arange(b) * T + T // 2) // b).astype(jnp.int32)
        noise = jax.random.normal(jax.random.key(1234), batch["image"].shape, jnp.float32)
        none = jnp.zeros((b,), bool)
        # Self-conditioned models are evaluated as they sample: with their own x0 estimate.
        terms = self._terms(params, ctx.extras, batch, t, noise, none, none, self_cond=True)
        cls = eval_metrics_class(tuple(sorted(terms)))
        return cls.single_from_model_output(mask=batch["mask"], **terms)

    # ---- hooks -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The tokenizer travels in every checkpoint, so sampling never needs the data."""
        return {"tokenizer": self.data().tokenizer.to_json()} if self._data is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("tokenizer")
        if saved is None or self._data is None:
            return
        if Tokenizer.from_json(saved) != self._data.tokenizer:
            raise ValueError(
                "the tokenizer rebuilt from this run's data differs from the one in the "
                "checkpoint: the training data or its tokenisation changed (data.source, "
                "data.num_train, data.data_seed, data.number_tokens or the JSONL file). Resume "
                "with the original data settings."
            )

    def init_from_params(
        self, loaded: Any, fresh: Any, loaded_task_state: dict | None = None
    ) -> Any:
        """Another mathart run's params, token embeddings matched by piece (`mathart.transfer`):
        its tokenizer (from `loaded_task_state`) and ours may differ when the data differs."""
        source = tokenizer_from_meta({"task_state": loaded_task_state or {}})
        target = self.data().tokenizer.vocab
        params, report = transfer.carry_params(
            loaded, fresh, source.vocab, target, self.config.init_from
        )
        logging.info(
            "init_from: %d of %d tokenizer pieces keep their trained embedding (new: %s); "
            "fresh modules %s, dropped modules %s",
            report["pieces_carried"],
            len(target),
            report["pieces_new"][:10],
            report["fresh_modules"],
            report["dropped_modules"],
        )
        return params

    def generator(self, mean_only: bool = False):
        """The run's sampler (config.sample); ``mean_only``: the regression mean alone (all a
        model.regression_only run has)."""
        if mean_only not in self._generators:
            self._generators[mean_only] = generator_from_config(
                self.model, self.config, mean_only=mean_only, schedule=self.schedule
            )
        return self._generators[mean_only]

    def _grid_inputs(self) -> dict[str, Any]:
        """Fixed validation examples and their distractor renders, built once."""
        if self._grid is None:
            val = self.data().val
            idx = input_pipeline.grid_indices(val, min(self.config.sample.grid_formulas, len(val)))
            split = val.take(idx)
            self._grid = {
                "split": split,
                "candidates": image_metrics.retrieval_candidates(
                    split, self.config.data.image_size, self.config.sample.retrieval_k
                ),
            }
        return self._grid

    def on_epoch_end(self, ctx: HookContext) -> HookResult | None:
        every = steps_from(
            epochs=self.config.sample.every_epochs,
            steps=None,
            steps_per_epoch=ctx.steps_per_epoch,
            what="sample.every_epochs",
        )
        if not due(ctx.step, every, ctx.total_steps, at_end=every > 0) or not ctx.is_main_process:
            return None
        grid = self._grid_inputs()
        split = grid["split"]
        images = self.generator()(
            ctx.params,
            split.arrays["tokens"],
            split.arrays["style"],
            jax.random.key(self.config.sample.seed),
            split.arrays["numbers"],
        )
        generated = to_uint8(images)
        truth = split.arrays["image"]
        scores = image_metrics.score(generated, truth, grid["candidates"])
        m = self.config.model
        if m.regression and not m.regression_only:  # how much the regression mean alone draws
            means = to_uint8(
                self.generator(mean_only=True)(
                    ctx.params,
                    split.arrays["tokens"],
                    split.arrays["style"],
                    None,
                    split.arrays["numbers"],
                )
            )
            mean_scores = image_metrics.score(means, truth, grid["candidates"])
            scores.update({f"regression_mean_{k}": v for k, v in mean_scores.items()})
        picture = captioned_pairs(
            generated,
            truth,
            [str(f) for f in split.formulas],
            scale=self.config.sample.grid_upscale,
        )
        return HookResult(
            images={"samples/generated_vs_truth": picture},
            scalars={f"samples/{k}": v for k, v in scores.items()},
        )

    def predict(self, params, extras, batch, rng) -> dict:
        """{"tokens": int32 [B, max_formula_tokens] (the run's tokenizer,
        `tokenizer_from_meta(run.meta).encode(text, ...)`), "numbers": float32 [B,
        max_formula_tokens] (`.numbers_of(text, ...)`; needed when model.number_features > 0),
        "style": [B, STYLE_DIM] (`input_pipeline.style_features(seeds)`, -1 = no style)} ->
        {"image": uint8 [B, R, R, 3]}: the run's sampler, steps and guidance (config.sample)."""
        del extras
        images = self.generator()(
            params, batch["tokens"], batch["style"], rng, batch.get("numbers")
        )
        return {"image": jnp.round((jnp.clip(images, -1.0, 1.0) + 1.0) * 127.5).astype(jnp.uint8)}

    def summarize_eval(self, split: str, computed) -> EvalSummary:
        return EvalSummary(scalars={k: float(np.asarray(v)) for k, v in computed.items()})

    def flops_per_example(self) -> float | None:
        """Analytic training FLOPs per example: 3 x the forward matmul/conv FLOPs, plus the
        expected share of self-conditioning's extra forward pass."""
        d = self.config.diffusion
        extra = d.self_condition_prob if d.self_condition else 0.0
        return (3.0 + extra) * forward_flops(self.config)
