"""The losses of Gatys et al. (plus total variation and Ruder et al.'s temporal term).

Each is a small pure function of tensors. Batched inputs give one loss per image ``[B]`` so that a
batch of independent images optimises exactly like the images one by one would (the sum of
independent losses has independent gradients).
"""

from __future__ import annotations

import torch


def gram(features: torch.Tensor, compute_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Gram matrix of ``[B, C, H, W]`` features -> ``[B, C, C]``, returned in fp32.

    Normalised by the number of values C*H*W so that the loss weights do not depend on the
    resolution. fp16 features are always promoted: their sums overflow (a classic source of NaNs
    in other tools). ``compute_dtype=torch.bfloat16`` multiplies bf16 features as they are: the
    product still accumulates in fp32 (CPU bf16 GEMMs do), only the result is rounded to bf16's
    8-bit mantissa (at most 0.4 % per entry) before it is promoted back. On CPUs with native bf16
    that GEMM is about 4.5x faster than fp32's, and the Gram matrices were a fifth of an evaluation.
    """
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w)
    f = f.to(torch.bfloat16) if compute_dtype == torch.bfloat16 else f.float()
    return torch.bmm(f, f.transpose(1, 2)).float() / (c * h * w)


def relative_mse(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean((x - target)^2) / mean(target^2)`` per batch item -> ``[B]``.

    Departure from the paper: raw squared errors of VGG layers differ by four orders of magnitude
    (relu4_1's Gram error dwarfs relu1_1's), so equal layer weights would mean "style = relu4_1".
    Dividing by the target's own energy makes every term dimensionless, the layers' gradients
    comparable, and the weights independent of how bright or busy the style image is.
    """
    dtype = torch.promote_types(x.dtype, torch.float32)  # half inputs are summed in fp32
    x, target = x.to(dtype), target.to(dtype)
    err = (x - target).pow(2).flatten(1).mean(1)
    energy = target.pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return err / energy


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Relative squared error ``[B]`` between ``[B, C, H, W]`` features and the content's."""
    return relative_mse(features, target)


def style_loss(
    grams: list[torch.Tensor], targets: list[torch.Tensor], layer_weights: tuple[float, ...]
) -> torch.Tensor:
    """Weighted sum over layers of the relative squared error of Gram matrices ``[B, C, C]``.

    Targets are ``[1, C, C]`` (one style for the whole batch) or ``[B, C, C]``.
    """
    total = grams[0].new_zeros(grams[0].shape[0])
    for g, t, w in zip(grams, targets, layer_weights):
        if w:
            total = total + w * relative_mse(g, t.expand_as(g))
    return total


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Total variation ``[B]`` of ``[B, C, H, W]``: mean squared difference of neighbouring pixels."""
    dx = (image[..., :, 1:] - image[..., :, :-1]).pow(2).flatten(1).mean(1)
    dy = (image[..., 1:, :] - image[..., :-1, :]).pow(2).flatten(1).mean(1)
    return dx + dy


def temporal_loss(image: torch.Tensor, warped: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Ruder et al.'s short-term temporal loss ``[B]``.

    ``image`` and ``warped`` are ``[B, 3, H, W]`` (the target and the previous stylized frame warped
    into the current one), ``mask`` is ``[B, 1, H, W]`` in [0, 1] (1 where the flow is trusted).
    Mean over pixels of mask * squared difference, summed over channels.
    """
    diff = (image - warped).pow(2).sum(1, keepdim=True)
    return (mask * diff).flatten(1).mean(1)
