"""VGG16 feature network (Simonyan & Zisserman 2015) for the optional perceptual loss, and a
loader for the standard published ImageNet weights in non-pickle formats.

Used by `mathart.losses` (perceptual distance) and `mathart.evaluate` (feature statistics) only
when the user passes a weights file (``config.loss.vgg_weights``); nothing here downloads.

Accepted files (never unpickled: ``np.load(..., allow_pickle=False)``, h5py for HDF5):
- Keras ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`` (the weights Keras publishes;
  layer groups ``block1_conv1`` ... each holding a 4-D kernel and a 1-D bias, HWIO). These
  expect Caffe preprocessing: BGR, 0-255, ImageNet channel means subtracted.
- ``.npz`` with Keras-style keys (``block1_conv1/kernel``, ``block1_conv1/bias``; Caffe
  preprocessing) or torchvision-style keys (``features.0.weight`` [O,I,3,3], ``features.0.bias``;
  converted to HWIO; torchvision preprocessing: RGB in [0,1], mean/std normalised). Convert a
  torchvision checkpoint once with ``np.savez(path, **{k: v.numpy() for k, v in sd.items()})``.

Only the convolutional trunk up to ``block4_conv3`` is built: the perceptual loss reads
relu1_2, relu2_2, relu3_3 and relu4_3 (Johnson et al. 2016 use relu2_2; LPIPS uses all five
blocks; four keep 32-pixel inputs at >= 4x4 in the deepest layer).
"""

import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from common.pooling import max_pool

# (layer name, output channels); "pool" marks 2x2 max pooling.
VGG16_LAYERS: tuple[tuple[str, int], ...] = (
    ("block1_conv1", 64), ("block1_conv2", 64), ("pool", 0),
    ("block2_conv1", 128), ("block2_conv2", 128), ("pool", 0),
    ("block3_conv1", 256), ("block3_conv2", 256), ("block3_conv3", 256), ("pool", 0),
    ("block4_conv1", 512), ("block4_conv2", 512), ("block4_conv3", 512),
)  # fmt: skip
FEATURE_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3")
CONV_NAMES = tuple(name for name, _ in VGG16_LAYERS if name != "pool")
# torchvision's `vgg16().features` indices of the same convolutions.
# (ReLUs and pools take the indices in between: 0 conv, 1 relu, 2 conv, 3 relu, 4 pool, 5 ...)
TORCHVISION_INDEX = dict(zip(CONV_NAMES, (0, 2, 5, 7, 10, 12, 14, 17, 19, 21)))

_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)
PREPROCESSING = ("caffe", "torch")


class VGG16Features(nn.Module):
    """[B, H, W, 3] RGB in [0, 1] -> list of the `FEATURE_LAYERS` activations (float32)."""

    preprocessing: str = "caffe"

    @nn.compact
    def __call__(self, rgb01: jax.Array) -> list[jax.Array]:
        x = rgb01.astype(jnp.float32)
        if self.preprocessing == "caffe":
            x = x[..., ::-1] * 255.0 - _CAFFE_MEAN_BGR
        elif self.preprocessing == "torch":
            x = (x - _TORCH_MEAN) / _TORCH_STD
        else:
            raise ValueError(
                f"unknown VGG preprocessing '{self.preprocessing}'; choose one of: "
                f"{', '.join(PREPROCESSING)}"
            )
        features = []
        for name, channels in VGG16_LAYERS:
            if name == "pool":
                x = max_pool(x, 2, "VALID")  # nn.max_pool's values, a cheaper backward
                continue
            x = nn.relu(nn.Conv(channels, (3, 3), name=name)(x))
            if name in FEATURE_LAYERS:
                features.append(x)
        return features


def _datasets_under(group) -> list[np.ndarray]:
    """Every array stored anywhere below an h5 group (Keras nests them one or two deep)."""
    found = []
    group.visititems(
        lambda _, obj: found.append(np.asarray(obj)) if hasattr(obj, "shape") else None
    )
    return found


def _from_h5(path: str) -> dict[str, dict[str, np.ndarray]]:
    import h5py

    params = {}
    with h5py.File(path, "r") as f:
        root = f.get("model_weights", f)
        for name in CONV_NAMES:
            if name not in root:
                raise ValueError(
                    f"{path}: no layer group '{name}'; expected the Keras VGG16 layout "
                    "(vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5)"
                )
            arrays = _datasets_under(root[name])
            kernel = [a for a in arrays if a.ndim == 4]
            bias = [a for a in arrays if a.ndim == 1]
            if len(kernel) != 1 or len(bias) != 1:
                raise ValueError(f"{path}: layer '{name}' must hold one 4-D kernel and one bias")
            params[name] = {"kernel": kernel[0], "bias": bias[0]}
    return params


def _from_npz(path: str) -> tuple[dict[str, dict[str, np.ndarray]], str]:
    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        if all(f"{n}/kernel" in keys for n in CONV_NAMES):
            return {
                n: {"kernel": data[f"{n}/kernel"], "bias": data[f"{n}/bias"]} for n in CONV_NAMES
            }, "caffe"
        if all(f"features.{TORCHVISION_INDEX[n]}.weight" in keys for n in CONV_NAMES):
            params = {}
            for n in CONV_NAMES:
                i = TORCHVISION_INDEX[n]
                params[n] = {
                    "kernel": np.transpose(data[f"features.{i}.weight"], (2, 3, 1, 0)),
                    "bias": data[f"features.{i}.bias"],
                }
            return params, "torch"
    raise ValueError(
        f"{path}: unrecognised VGG16 keys; expected 'block1_conv1/kernel'... (Keras names) or "
        f"'features.0.weight'... (torchvision names), found e.g. {sorted(keys)[:4]}"
    )


def load_vgg16_weights(path: str, preprocessing: str = "auto") -> tuple[dict[str, Any], str]:
    """Reads VGG16 conv weights -> (Flax params for `VGG16Features`, preprocessing name).

    ``preprocessing="auto"`` picks the convention of the file's origin (Keras: caffe,
    torchvision: torch). Shapes are checked against VGG16; errors name the file and the layer.
    """
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"VGG16 weights file '{path}' does not exist; set config.loss.vgg_weights to a "
            "Keras .h5 or an .npz (see mathart/models/vgg16.py), or to '' for the weight-free "
            "structural loss"
        )
    if path.endswith((".h5", ".hdf5")):
        params, origin = _from_h5(path), "caffe"
    elif path.endswith(".npz"):
        params, origin = _from_npz(path)
    else:
        raise ValueError(f"{path}: VGG16 weights must be .h5/.hdf5 (Keras) or .npz, not pickles")
    c_in = 3
    for name, channels in VGG16_LAYERS:
        if name == "pool":
            continue
        want = (3, 3, c_in, channels)
        got = params[name]["kernel"].shape
        if got != want or params[name]["bias"].shape != (channels,):
            raise ValueError(f"{path}: layer '{name}' kernel has shape {got}, VGG16 needs {want}")
        c_in = channels
    chosen = origin if preprocessing == "auto" else preprocessing
    if chosen not in PREPROCESSING:
        raise ValueError(
            f"unknown config.loss.vgg_preprocessing '{preprocessing}'; choose auto, "
            f"{', '.join(PREPROCESSING)}"
        )
    tree = {n: {k: jnp.asarray(v, jnp.float32) for k, v in p.items()} for n, p in params.items()}
    return {"params": tree}, chosen
