"""Colour preservation: keep the content's colours and take only the style's texture.

Gatys et al. ("Preserving Color in Neural Artistic Style Transfer") give two ways; this is the
luminance one, applied after optimisation: the result's luminance (Y of YCbCr) combined with the
content's chroma (Cb, Cr). It costs nothing during optimisation and cannot shift hues.
"""

from __future__ import annotations

import torch

# ITU-R BT.601 full-range RGB <-> YCbCr, with RGB in [0, 1] and Cb, Cr centred on 0.
_RGB_TO_YCBCR = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)


def rgb_to_ycbcr(image: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` RGB -> YCbCr (same shape)."""
    m = _RGB_TO_YCBCR.to(image)
    return torch.einsum("ij,bjhw->bihw", m, image)


def ycbcr_to_rgb(image: torch.Tensor) -> torch.Tensor:
    m = torch.linalg.inv(_RGB_TO_YCBCR).to(image)
    return torch.einsum("ij,bjhw->bihw", m, image)


def preserve_colors(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Luminance of ``stylized`` with the chroma of ``content`` (both ``[B, 3, H, W]`` in [0, 1])."""
    y = rgb_to_ycbcr(stylized)[:, :1]
    cbcr = rgb_to_ycbcr(content)[:, 1:]
    return ycbcr_to_rgb(torch.cat([y, cbcr], 1)).clamp(0, 1)
