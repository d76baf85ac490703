"""The dual hyperbolic VAE: two Gaussian encoders, one decoder, two projections into the ball.

    x [B, 9] in {-1,0,1} --encoder_a--> (mu_a, logvar_a) [B, 16] --projection_a--> z_a [B, 16]
                         --encoder_b--> (mu_b, logvar_b) [B, 16] --projection_b--> z_b [B, 16]
    decoder: R^16 -> logits [B, 9, 3] (class k = trit k - 1)

Encoder A + decoder form the plain VAE of stage 0 (reconstruction: coverage). Encoder B starts
as a copy of A and, with both projections, learns the 3-adic radial hierarchy in stage 1.
The projections build points in ball coordinates, as the reference does (no exp map):
z_hyp = normalize(z + g(z)) * max_radius * sigmoid(h(z)), so |z_hyp| < max_radius by
construction. Used by `ternary_vae.task`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from common.precision import compute_dtype
from ternary_vae import hyperbolic
from ternary_vae.ternary import NUM_TRITS


class GaussianEncoder(nn.Module):
    """9 -> widths (Dense, LayerNorm, SiLU, Dropout except after the last) -> (mu, logvar)."""

    latent_dim: int = 16
    widths: tuple[int, ...] = (256, 128, 64)
    dropout: float = 0.1
    logvar_min: float = -10.0
    logvar_max: float = 2.0
    first_bias_std: float = 0.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        h = x.astype(self.dtype)
        for i, width in enumerate(self.widths):
            bias_init = (
                nn.initializers.normal(self.first_bias_std)
                if i == 0 and self.first_bias_std > 0
                else nn.initializers.zeros
            )
            h = nn.Dense(width, dtype=self.dtype, bias_init=bias_init)(h)
            h = nn.silu(nn.LayerNorm(dtype=self.dtype)(h))
            if i < len(self.widths) - 1:
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
        mu = nn.Dense(self.latent_dim, dtype=self.dtype, name="fc_mu")(h).astype(jnp.float32)
        logvar = nn.Dense(self.latent_dim, dtype=self.dtype, name="fc_logvar")(h)
        logvar = jnp.clip(logvar.astype(jnp.float32), self.logvar_min, self.logvar_max)
        return mu, logvar


class TritDecoder(nn.Module):
    """latent -> widths (Dense, LayerNorm, SiLU, Dropout) -> logits [B, 9, 3] in float32."""

    widths: tuple[int, ...] = (32, 64)
    dropout: float = 0.1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
        h = z.astype(self.dtype)
        for width in self.widths:
            h = nn.Dense(width, dtype=self.dtype)(h)
            h = nn.silu(nn.LayerNorm(dtype=self.dtype)(h))
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
        logits = nn.Dense(NUM_TRITS * 3, dtype=self.dtype)(h)
        return logits.astype(jnp.float32).reshape(*z.shape[:-1], NUM_TRITS, 3)


class BallProjection(nn.Module):
    """Euclidean latent -> Poincaré ball: direction from z + g(z), Euclidean norm from h(z).

    g ends in a zero-initialised layer, so the map starts as "keep the direction of z"; the
    norm is max_radius * sigmoid(h(z)) in (0, max_radius). Output is float32.
    """

    hidden_dim: int = 64
    max_radius: float = 0.95
    dropout: float = 0.1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
        h = nn.Dense(self.hidden_dim, dtype=self.dtype)(z.astype(self.dtype))
        h = nn.silu(nn.LayerNorm(dtype=self.dtype)(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        offset = nn.Dense(
            z.shape[-1], dtype=self.dtype, kernel_init=nn.initializers.zeros, name="direction_out"
        )(h)
        direction = z.astype(jnp.float32) + offset.astype(jnp.float32)
        direction = direction / hyperbolic.safe_norm(direction, keepdims=True)

        r = nn.Dense(max(32, self.hidden_dim // 2), dtype=self.dtype)(z.astype(self.dtype))
        r = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(r))
        r = nn.Dense(1, dtype=self.dtype, bias_init=nn.initializers.zeros, name="radius_out")(r)
        norm = self.max_radius * jax.nn.sigmoid(r.astype(jnp.float32))
        return direction * norm


class TernaryVAE(nn.Module):
    """Both VAEs and both projections; methods select the path each stage needs."""

    latent_dim: int = 16
    hidden_dim: int = 64
    encoder_widths: tuple[int, ...] = (256, 128, 64)
    decoder_widths: tuple[int, ...] = (32, 64)
    dropout: float = 0.1
    logvar_min: float = -10.0
    logvar_max: float = 2.0
    first_bias_std: float = 0.0
    max_radius: float = 0.95
    curvature: float = 1.0
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        enc = dict(
            latent_dim=self.latent_dim,
            widths=tuple(self.encoder_widths),
            dropout=self.dropout,
            logvar_min=self.logvar_min,
            logvar_max=self.logvar_max,
            first_bias_std=self.first_bias_std,
            dtype=self.dtype,
        )
        proj = dict(
            hidden_dim=self.hidden_dim,
            max_radius=self.max_radius,
            dropout=self.dropout,
            dtype=self.dtype,
        )
        self.encoder_a = GaussianEncoder(**enc)
        self.encoder_b = GaussianEncoder(**enc)
        self.decoder = TritDecoder(
            widths=tuple(self.decoder_widths), dropout=self.dropout, dtype=self.dtype
        )
        self.projection_a = BallProjection(**proj)
        self.projection_b = BallProjection(**proj)

    def _sample(self, mu: jax.Array, logvar: jax.Array, train: bool) -> jax.Array:
        """Reparameterised draw when training; the mean (deterministic) otherwise."""
        if not train:
            return mu
        eps = jax.random.normal(self.make_rng("sample"), mu.shape, jnp.float32)
        return mu + eps * jnp.exp(0.5 * logvar)

    def vae(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
        """Stage 0: encoder A + decoder as a plain VAE."""
        mu, logvar = self.encoder_a(x, train=train)
        z = self._sample(mu, logvar, train)
        return {"mu_a": mu, "logvar_a": logvar, "logits": self.decoder(z, train=train)}

    def __call__(
        self, x: jax.Array, *, train: bool, train_b: bool | None = None
    ) -> dict[str, jax.Array]:
        """Stage 1 (and evaluation): both encoders, both projections, both decoder paths.

        ``logits_mean`` = decoder(mu_a) is what the coverage metric reads;
        ``logits_hyp`` = decoder(log_0(z_a)) lets the reconstruction loss reach projection A.
        ``train_b`` (default: ``train``) switches sampling and dropout of the B path alone, so
        stage 1 can fit exactly the deterministic radii that evaluation measures.
        """
        train_b = train if train_b is None else train_b
        mu_a, logvar_a = self.encoder_a(x, train=train)
        mu_b, logvar_b = self.encoder_b(x, train=train_b)
        z_a = self.projection_a(self._sample(mu_a, logvar_a, train), train=train)
        z_b = self.projection_b(self._sample(mu_b, logvar_b, train_b), train=train_b)
        return {
            "mu_a": mu_a,
            "logvar_a": logvar_a,
            "mu_b": mu_b,
            "logvar_b": logvar_b,
            "z_a": z_a,
            "z_b": z_b,
            "logits_mean": self.decoder(mu_a, train=train),
            "logits_hyp": self.decoder(hyperbolic.log_map_zero(z_a, self.curvature), train=train),
        }


def build_model(config: ml_collections.ConfigDict) -> TernaryVAE:
    m = config.model
    return TernaryVAE(
        latent_dim=m.latent_dim,
        hidden_dim=m.hidden_dim,
        encoder_widths=tuple(m.encoder_widths),
        decoder_widths=tuple(m.decoder_widths),
        dropout=m.dropout,
        logvar_min=m.logvar_min,
        logvar_max=m.logvar_max,
        first_bias_std=m.get("first_bias_std", 0.0),
        max_radius=m.max_radius,
        curvature=m.curvature,
        dtype=compute_dtype(config),
    )
