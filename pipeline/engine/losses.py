"""The losses of Gatys et al. (plus total variation and Ruder et al.'s temporal term).

Each is a small pure function of tensors. Batched inputs give one loss per image ``[B]`` so that a
batch of independent images optimises exactly like the images one by one would (the sum of
independent losses has independent gradients).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LossAndGradient:
    """A loss term ``[B]`` worked out with its gradient in closed form (the gradient has its input's shape)."""

    loss: torch.Tensor
    gradient: torch.Tensor


def _is_channels_last(features: torch.Tensor) -> bool:
    return features.shape[1] > 1 and features.is_contiguous(memory_format=torch.channels_last)


def _positions(features: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[B, C, H, W]`` as one matrix per image, without copying when ``dtype`` is the features':
    ``[B, H*W, C]`` for channels_last features, ``[B, C, H*W]`` otherwise (the memory as it lies)."""
    b, c, h, w = features.shape
    if _is_channels_last(features):
        return features.permute(0, 2, 3, 1).reshape(b, h * w, c).to(dtype)
    return features.reshape(b, c, h * w).to(dtype)


class _Gram(torch.autograd.Function):
    """``F F^T`` with a backward of one matrix product, ``dF = (S + S^T) F``, in the features' own layout.

    Autograd's own backward of ``bmm(f, f^T)`` makes two products and adds them, and returns the
    gradient in the layout of ``f``'s reshape: for channels_last features that is the other layout,
    and every layer's gradient then had to be reordered before it met the convolution's (measured:
    a third of an evaluation at 256 px on an AMX CPU, docs/performance.md).
    """

    @staticmethod
    def forward(ctx, features, compute_dtype, denominator):
        ctx.save_for_backward(features)
        ctx.meta = (compute_dtype, denominator)
        f = _positions(features, compute_dtype)
        product = torch.bmm(f.transpose(1, 2), f) if _is_channels_last(features) else torch.bmm(f, f.transpose(1, 2))
        return product.float() / denominator

    @staticmethod
    def backward(ctx, grad):
        (features,) = ctx.saved_tensors
        return gram_backward(features, grad, *ctx.meta), None, None


def gram_backward(features: torch.Tensor, grad: torch.Tensor, compute_dtype: torch.dtype,
                  denominator: float) -> torch.Tensor:
    """Gradient ``[B, C, H, W]`` (the features' dtype and layout) for a gradient ``grad`` ``[B, C, C]``
    of their Gram matrix ``gram(features, compute_dtype, denominator)``."""
    b, c, h, w = features.shape
    f = _positions(features, compute_dtype)
    sym = ((grad + grad.transpose(1, 2)) / denominator).to(compute_dtype)
    if _is_channels_last(features):
        return torch.bmm(f, sym).to(features.dtype).view(b, h, w, c).permute(0, 3, 1, 2)
    return torch.bmm(sym, f).to(features.dtype).view(b, c, h, w)


def gram(features: torch.Tensor, compute_dtype: torch.dtype = torch.float32,
         denominator: float | None = None) -> torch.Tensor:
    """Gram matrix of ``[B, C, H, W]`` features -> ``[B, C, C]``, returned in fp32.

    Normalised by the number of values C*H*W so that the loss weights do not depend on the
    resolution; a tile's share of a whole image's Gram matrix passes the whole image's count as
    ``denominator`` (the tiles' results then add up to the image's). fp16 features are always
    promoted: their sums overflow (a classic source of NaNs in other tools). ``compute_dtype=
    torch.bfloat16`` multiplies bf16 features as they are: the product still accumulates in fp32
    (CPU bf16 GEMMs do), only the result is rounded to bf16's 8-bit mantissa (at most 0.4 % per
    entry) before it is promoted back. On CPUs with native bf16 that GEMM is about 4.5x faster than
    fp32's. Works on either memory layout without copying the features.
    """
    b, c, h, w = features.shape
    compute_dtype = torch.bfloat16 if compute_dtype == torch.bfloat16 else torch.float32
    return _Gram.apply(features, compute_dtype, float(denominator or c * h * w))


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


def content_share(part: torch.Tensor, target: torch.Tensor, count: int,
                  energy: torch.Tensor) -> LossAndGradient:
    """Part of ``content_loss`` from some positions of a map, and its gradient there.

    ``part`` and ``target`` are the same positions ``[B, C, h', w']`` of the features and of the
    content's; ``count`` is the number of values ``C*h*w`` of one image's whole map and ``energy``
    ``[B]`` the mean of its squared target. The shares of all positions add up to the whole map's
    ``content_loss`` (a relative squared error is a sum over positions); the gradient is returned
    rather than left to autograd so that a tiled evaluation can lay it into a tile of any layout.
    """
    diff = part.float() - target.float()
    scale = 1.0 / (count * energy)
    share = diff.pow(2).flatten(1).sum(1) * scale
    return LossAndGradient(loss=share, gradient=2 * diff * scale.view(-1, 1, 1, 1))


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


def tv_loss_and_gradient(image: torch.Tensor) -> LossAndGradient:
    """``tv_loss(image)`` ``[B]`` and its gradient ``[B, C, H, W]``, worked out one plane at a time.

    Autograd's route keeps the image-sized maps of differences for the backward and makes as many
    again in it (about half a gigabyte at 12 MP); here only one plane's differences exist at once.
    """
    b, c, h, w = image.shape
    loss = torch.zeros(b, dtype=torch.promote_types(image.dtype, torch.float32), device=image.device)
    grad = torch.zeros_like(image)
    across, down = c * h * (w - 1), c * (h - 1) * w  # tv_loss's two means
    for i in range(b):
        for channel in range(c):
            plane, out = image[i, channel], grad[i, channel]
            for diff, count, ahead, behind in (
                (plane[:, 1:] - plane[:, :-1], across, out[:, 1:], out[:, :-1]),
                (plane[1:, :] - plane[:-1, :], down, out[1:, :], out[:-1, :]),
            ):
                loss[i] += diff.square().sum() / count
                ahead.add_(diff, alpha=2 / count)
                behind.sub_(diff, alpha=2 / count)
    return LossAndGradient(loss=loss, gradient=grad)


def temporal_loss(image: torch.Tensor, warped: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Ruder et al.'s short-term temporal loss ``[B]``.

    ``image`` and ``warped`` are ``[B, 3, H, W]`` (the target and the previous stylized frame warped
    into the current one), ``mask`` is ``[B, 1, H, W]`` in [0, 1] (1 where the flow is trusted).
    Mean over pixels of mask * squared difference, summed over channels.
    """
    diff = (image - warped).pow(2).sum(1, keepdim=True)
    return (mask * diff).flatten(1).mean(1)



def temporal_loss_and_gradient(image: torch.Tensor, warped: torch.Tensor,
                               mask: torch.Tensor) -> LossAndGradient:
    """``temporal_loss(image, warped, mask)`` ``[B]`` and its gradient, one plane at a time (as
    ``tv_loss_and_gradient``: no image-sized autograd graph)."""
    b, c, h, w = image.shape
    loss = torch.zeros(b, dtype=torch.promote_types(image.dtype, torch.float32), device=image.device)
    grad = torch.empty_like(image)
    for i in range(b):
        for channel in range(c):
            diff = image[i, channel] - warped[i, channel]
            weighted = mask[i, 0] * diff
            loss[i] += (weighted * diff).sum() / (h * w)
            torch.mul(weighted, 2 / (h * w), out=grad[i, channel])
    return LossAndGradient(loss=loss, gradient=grad)
