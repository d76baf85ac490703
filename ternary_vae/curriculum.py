"""Loss-weight curriculum of stage 1: a pure function of the (fractional) epoch.

The 5.12.5 YAML names three phases (its `curriculum.*` epochs) but no code of the original
implements them; this is a self-consistent reading of those epochs, as multipliers on the
profile weights:

    [0, C)            coverage first: hierarchy-shaping terms off (hierarchy, separation,
                      radial, rank); coverage CE and richness act at full weight
    [C, C + R)        hierarchy ramp: those terms ramp linearly 0 -> 1; the geodesic phase
                      starts at `geodesic_start_epoch` (C by default)
    [C + R, E - P)    full profile weights
    [E - P, E)        richness preserve: richness (and spread) weights x `richness_boost`

C, R, P = coverage_first_epochs, hierarchy_ramp_epochs, richness_preserve_epochs; E = the
run's length in epochs. Written with jnp so `Task.loss_fn` can evaluate it from the loop's
`ctx.epoch` and `ctx.total_epochs` inside the jitted step (no host round trip, nothing to
checkpoint: the epoch is the state).
"""

from dataclasses import dataclass

import jax.numpy as jnp


@dataclass(frozen=True)
class Curriculum:
    enabled: bool = True
    coverage_first_epochs: float = 30.0
    hierarchy_ramp_epochs: float = 50.0
    richness_preserve_epochs: float = 20.0
    richness_boost: float = 1.5
    geodesic_start_epoch: float = 30.0

    def multipliers(
        self, epoch: jnp.ndarray | float, total_epochs: jnp.ndarray | float
    ) -> dict[str, jnp.ndarray]:
        """epoch (float, fractional) of a run of `total_epochs` -> {"hierarchy", "richness",
        "geodesic"} in float32."""
        epoch = jnp.asarray(epoch, jnp.float32)
        if not self.enabled:
            one = jnp.ones((), jnp.float32)
            geo = (epoch >= self.geodesic_start_epoch).astype(jnp.float32)
            return {"hierarchy": one, "richness": one, "geodesic": geo}
        ramp = jnp.clip(
            (epoch - self.coverage_first_epochs) / max(self.hierarchy_ramp_epochs, 1e-9), 0.0, 1.0
        )
        hierarchy = jnp.where(epoch < self.coverage_first_epochs, 0.0, ramp)
        preserve_start = total_epochs - self.richness_preserve_epochs
        richness = jnp.where(epoch >= preserve_start, self.richness_boost, 1.0)
        geodesic = (epoch >= self.geodesic_start_epoch).astype(jnp.float32)
        return {
            "hierarchy": hierarchy.astype(jnp.float32),
            "richness": richness.astype(jnp.float32),
            "geodesic": geodesic,
        }

    def phase(self, epoch: float, total_epochs: float) -> str:
        """Human-readable phase name (logs and analysis)."""
        if not self.enabled:
            return "off"
        if epoch < self.coverage_first_epochs:
            return "coverage_first"
        if epoch < self.coverage_first_epochs + self.hierarchy_ramp_epochs:
            return "hierarchy_ramp"
        if epoch >= total_epochs - self.richness_preserve_epochs:
            return "richness_preserve"
        return "full"
