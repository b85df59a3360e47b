"""Shared fixtures: the real bundled VGG19 (loaded once) and small generated images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(max(1, torch.get_num_threads()))


@pytest.fixture(scope="session")
def vgg_weights():
    from pipeline.engine.weights import load_weights

    return load_weights("original")


@pytest.fixture(scope="session")
def features(vgg_weights):
    from pipeline.config import CONTENT_LAYER, STYLE_LAYERS
    from pipeline.engine.features import VGGFeatures

    return VGGFeatures(vgg_weights, (*STYLE_LAYERS, CONTENT_LAYER))


def pattern(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth, colourful RGB uint8 picture with some structure (not noise, not flat)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    fx, fy, phase = rng.uniform(0.05, 0.3, 3)
    r = 0.5 + 0.5 * np.sin(x * fx + phase)
    g = 0.5 + 0.5 * np.cos(y * fy + 2 * phase)
    b = 0.5 + 0.5 * np.sin((x + y) * (fx + fy) / 2)
    img = np.stack([r, g, b], -1)
    img[height // 4 : height // 2, width // 4 : width // 2] = rng.uniform(0, 1, 3)  # a block: an edge
    return (img * 255).astype(np.uint8)


def stripes(width: int, height: int) -> np.ndarray:
    """A 'painting': diagonal coloured stripes, a texture very unlike ``pattern``."""
    y, x = np.mgrid[0:height, 0:width]
    band = ((x + 2 * y) // 4) % 3
    palette = np.array([[230, 40, 30], [250, 220, 40], [20, 40, 200]], np.uint8)
    return palette[band]


@pytest.fixture
def content_file(tmp_path: Path) -> Path:
    path = tmp_path / "content.png"
    Image.fromarray(pattern(64, 48)).save(path)
    return path


@pytest.fixture
def style_file(tmp_path: Path) -> Path:
    path = tmp_path / "style.png"
    Image.fromarray(stripes(64, 64)).save(path)
    return path


@pytest.fixture
def style_file2(tmp_path: Path) -> Path:
    path = tmp_path / "style2.png"
    Image.fromarray(pattern(64, 64, seed=7)).save(path)
    return path
