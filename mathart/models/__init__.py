"""Networks of the mathart family: formula encoder, conditional U-Net, the combined denoiser,
and the VGG16 feature network of the optional perceptual loss."""

from mathart.models.denoiser import Condition, MathArtDenoiser, concat_conditions, select_condition
from mathart.models.encoder import FormulaEncoder
from mathart.models.unet import ConditionalUNet, group_count

__all__ = [
    "Condition",
    "ConditionalUNet",
    "FormulaEncoder",
    "MathArtDenoiser",
    "concat_conditions",
    "group_count",
    "select_condition",
]
