"""Networks of the mathart family: formula encoder, conditional U-Net, the combined denoiser,
and the VGG16 feature network of the optional perceptual loss; `build_model(config, ...)`
builds the denoiser a config describes (every family has a `build_model`)."""

from mathart.models.build import build_model, forward_flops, num_families_of
from mathart.models.denoiser import Condition, MathArtDenoiser, concat_conditions, select_condition
from mathart.models.encoder import FormulaEncoder
from mathart.models.unet import ConditionalUNet, group_count

__all__ = [
    "Condition",
    "ConditionalUNet",
    "FormulaEncoder",
    "MathArtDenoiser",
    "build_model",
    "concat_conditions",
    "forward_flops",
    "group_count",
    "num_families_of",
    "select_condition",
]
