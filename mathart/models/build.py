"""Building the mathart network from a config, and its analytic FLOP count (for MFU in
`common.bench`; cross-checked against XLA's count in the tests)."""

from typing import Any

import ml_collections

from common.flops import same_conv_taps
from common.precision import compute_dtype
from mathart.dataset import FAMILIES
from mathart.input_pipeline import STYLE_DIM
from mathart.models.denoiser import MathArtDenoiser
from mathart.models.field import field_flops


def num_families_of(config: ml_collections.ConfigDict) -> int:
    """Classes of the family head: the procedural families when the head is on, else 0."""
    if config.data.source == "procedural" and config.loss.family_weight > 0:
        return len(FAMILIES)
    return 0


def build_model(
    config: ml_collections.ConfigDict, num_families: int, dtype: Any = None
) -> MathArtDenoiser:
    """The network described by ``config.model`` (sizes) and the compute dtype."""
    m = config.model
    return MathArtDenoiser(
        vocab_size=m.vocab_size,
        max_formula_tokens=m.max_formula_tokens,
        encoder_width=m.embedding_dim,
        encoder_layers=m.num_layers,
        encoder_heads=m.num_heads,
        encoder_mlp_dim=m.mlp_size,
        base_channels=m.base_channels,
        channel_mult=tuple(m.channel_mult),
        num_res_blocks=m.num_res_blocks,
        time_embed_dim=m.time_emb_dim,
        cross_attention_scales=tuple(m.cross_attention_scales),
        self_attention_scales=tuple(m.self_attention_scales),
        extra_skip_scales=tuple(m.extra_skip_scales),
        patch_size=m.patch_size,
        num_attention_heads=m.attention_heads,
        norm_groups=m.norm_groups,
        style_dim=STYLE_DIM,
        num_families=num_families,
        remat=m.remat,
        self_condition=config.diffusion.self_condition,
        full_res_channels=m.full_res_channels,
        regression=m.regression,
        regression_channels=m.regression_channels,
        regression_net=m.regression_net,
        field_width=m.field_width,
        field_depth=m.field_depth,
        field_frequencies=m.field_frequencies,
        field_cross_attention=m.field_cross_attention,
        output_modulation=m.output_modulation,
        number_features=m.number_features,
        dtype=compute_dtype(config) if dtype is None else dtype,
    )


def forward_flops(config: ml_collections.ConfigDict) -> float:
    """Forward FLOPs of one example (2 per multiply-add), counting convolutions (taps inside
    the image only), dense layers and attention products of the encoder and U-Net; norms,
    activations and the softmax are left out."""
    m = config.model
    length, d = m.max_formula_tokens, m.embedding_dim
    flops = (
        m.num_layers
        * 2
        * (4 * length * d * d + 2 * length * length * d + 2 * length * d * m.mlp_size)
    )
    ctx = length + 1  # formula tokens + the style token
    side = config.data.image_size // m.patch_size

    def conv(n, k, cin, cout, stride=1):  # n: input side (square feature maps)
        return 2 * same_conv_taps(n, k, stride) ** 2 * cin * cout

    def res(n, cin, cout):
        return (
            conv(n, 3, cin, cout)
            + conv(n, 3, cout, cout)
            + (conv(n, 1, cin, cout) if cin != cout else 0)
        )

    def attn(n, c, self_attn):
        hw = n * n
        f = 2 * hw * c * c * 2  # proj_in, proj_out
        if self_attn:
            f += 2 * (4 * hw * c * c + 2 * hw * hw * c)
        f += 2 * (
            2 * hw * c * c + 2 * ctx * d * c + 2 * hw * ctx * c
        )  # cross: q, out, k, v, qk, av
        return f + 2 * hw * c * 8 * c  # MLP 4x

    def unet(base: int, in_channels: int, extra_skip_scales) -> float:
        """One U-Net of ``base`` channels on ``in_channels`` input channels."""
        flops = 0.0
        scales = [m.patch_size * 2**i for i in range(len(m.channel_mult))]
        chans = [base * k for k in m.channel_mult]
        flops += conv(side, 3, in_channels * m.patch_size**2, base)  # conv_in
        flops += conv(side, 3, base, 3 * m.patch_size**2)  # conv_out
        if m.full_res_channels:  # to_full_res, then full_res_conv and full_res_out
            width, full = m.full_res_channels, config.data.image_size
            flops += conv(side, 3, base, width * m.patch_size**2)
            flops += conv(full, 3, width + in_channels, width) + conv(full, 3, width, 3)
        skips, c = [base], base
        for i, (s, ch) in enumerate(zip(scales, chans)):
            n = side >> i
            for _ in range(m.num_res_blocks):
                flops += res(n, c, ch)
                if s in m.cross_attention_scales:
                    flops += attn(n, ch, s in m.self_attention_scales)
                c = ch
                skips.append(c)
            if i < len(scales) - 1:
                flops += conv(n, 3, c, c, stride=2)  # Downsample
                skips.append(c)
        n = side >> (len(scales) - 1)
        flops += 2 * res(n, c, c) + (
            attn(n, c, scales[-1] in m.self_attention_scales)
            if scales[-1] in m.cross_attention_scales
            else 0
        )
        for i in reversed(range(len(scales))):
            n = side >> i
            for _ in range(m.num_res_blocks + 1):
                cin = c + skips.pop()
                flops += res(n, cin, chans[i]) + (
                    attn(n, chans[i], scales[i] in m.self_attention_scales)
                    if scales[i] in m.cross_attention_scales
                    else 0
                )
                c = chans[i]
            if scales[i] in extra_skip_scales:
                flops += conv(n, 1, 3, c)  # the pooled noisy input's 1x1 conv
            if i > 0:
                flops += conv(2 * n, 3, c, c)  # Upsample: nearest resize, then a conv
        return flops

    # x_t, plus the previous x0 estimate (self-conditioning) or the regression mean; a
    # regression_only run never runs the denoiser.
    second_input = config.diffusion.self_condition or m.regression
    if not m.regression_only:
        flops += unet(m.base_channels, 6 if second_input else 3, m.extra_skip_scales)
    if m.regression and m.regression_net == "field":
        flops += field_flops(
            pixels=config.data.image_size**2,
            width=m.field_width,
            depth=m.field_depth,
            frequencies=m.field_frequencies,
            cross_attention=m.field_cross_attention,
            ctx=ctx,
            d=d,
        )
    elif m.regression:  # the regression U-Net on the 3 coordinate channels
        flops += unet(m.regression_channels or m.base_channels, 3, ())
    return float(flops)
