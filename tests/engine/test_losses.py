import torch

from pipeline.engine.losses import (
    content_loss,
    gram,
    relative_mse,
    style_loss,
    temporal_loss,
    temporal_loss_and_gradient,
    tv_loss,
    tv_loss_and_gradient,
)


def test_gram_shape_symmetry_and_value():
    f = torch.randn(2, 4, 5, 6)
    g = gram(f)
    assert g.shape == (2, 4, 4)
    assert torch.allclose(g, g.transpose(1, 2))
    flat = f[0].reshape(4, 30)
    assert torch.allclose(g[0], flat @ flat.T / (4 * 30), atol=1e-6)


def test_gram_does_not_depend_on_resolution():
    f = torch.rand(1, 3, 4, 4)
    tiled = f.repeat(1, 1, 3, 3)  # the same statistics over nine times the area
    assert torch.allclose(gram(f), gram(tiled), atol=1e-6)


def test_gram_is_fp32_for_half_inputs():
    f = (torch.rand(1, 8, 16, 16) * 300).to(torch.bfloat16)
    g = gram(f)
    assert g.dtype == torch.float32 and torch.isfinite(g).all()


def test_bf16_gram_accumulates_in_fp32():
    # 2^16 positions: a bf16 accumulator would lose whole percents; fp32 accumulation leaves only
    # the rounding of each result to bf16 (2^-8 relative at most).
    f = torch.rand(1, 16, 256, 256).to(torch.bfloat16)
    exact = gram(f.double())
    fast = gram(f, torch.bfloat16)
    assert fast.dtype == torch.float32
    assert ((fast.double() - exact).abs() / exact).max() <= 2**-8


def test_relative_mse_is_zero_at_target_and_scale_free():
    t = torch.rand(2, 3, 4, 4) + 0.1
    assert torch.allclose(relative_mse(t, t), torch.zeros(2))
    x = torch.rand(2, 3, 4, 4)
    assert torch.allclose(relative_mse(10 * x, 10 * t), relative_mse(x, t), rtol=1e-5)


def test_content_loss_per_item():
    t = torch.rand(2, 3, 4, 4) + 0.1
    x = t.clone()
    x[1] += 1
    loss = content_loss(x, t)
    assert loss.shape == (2,)
    assert loss[0] == 0 and loss[1] > 0


def test_style_loss_weights_and_broadcast():
    grams = [torch.rand(2, 3, 3), torch.rand(2, 4, 4)]
    targets = [torch.rand(1, 3, 3), torch.rand(1, 4, 4)]
    only_first = style_loss(grams, targets, (1.0, 0.0))
    assert torch.allclose(only_first, relative_mse(grams[0], targets[0].expand(2, 3, 3)))
    both = style_loss(grams, targets, (1.0, 2.0))
    assert torch.allclose(both, only_first + 2 * relative_mse(grams[1], targets[1].expand(2, 4, 4)))


def test_tv_loss_zero_for_flat_positive_for_edges():
    flat = torch.full((1, 3, 8, 8), 0.3)
    assert tv_loss(flat).item() == 0
    edge = flat.clone()
    edge[..., 4:] = 0.8
    assert tv_loss(edge).item() > 0


def test_temporal_loss_zero_when_warp_matches_and_respects_mask():
    img = torch.rand(1, 3, 8, 8)
    mask = torch.ones(1, 1, 8, 8)
    assert temporal_loss(img, img, mask).item() == 0
    other = img.clone()
    other[..., :4] += 0.5
    assert temporal_loss(other, img, mask).item() > 0
    mask[..., :4] = 0  # the changed region is untrusted: no penalty
    assert temporal_loss(other, img, mask).item() == 0


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    x = torch.rand(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    t = torch.rand(1, 2, 5, 5, dtype=torch.float64) + 0.1
    tg = gram(torch.rand(1, 2, 5, 5, dtype=torch.float64))
    m = torch.rand(1, 1, 5, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: content_loss(a, t), (x,))
    assert torch.autograd.gradcheck(lambda a: tv_loss(a), (x,))
    assert torch.autograd.gradcheck(lambda a: temporal_loss(a, t, m), (x,))
    # gram() promotes to fp32 on purpose; check its gradient through a float64 reimplementation.
    def style64(a):
        f = a.reshape(1, 2, 25)
        g = f @ f.transpose(1, 2) / 50
        return relative_mse(g, tg)
    assert torch.autograd.gradcheck(style64, (x,))
    # and that gram's own gradient agrees with that reference
    xf = x.detach().float().requires_grad_(True)
    style_loss([gram(xf)], [tg.float()], (1.0,)).sum().backward()
    x64 = x.detach().clone().requires_grad_(True)
    style64(x64).sum().backward()
    assert torch.allclose(xf.grad.double(), x64.grad, rtol=1e-3, atol=1e-6)


def test_closed_form_pixel_terms_equal_autograd():
    # evaluate() takes TV and the temporal term with their gradients in closed form, plane by plane.
    torch.manual_seed(0)
    x = torch.rand(2, 3, 7, 11, dtype=torch.float64, requires_grad=True)
    warped = torch.rand(2, 3, 7, 11, dtype=torch.float64)
    mask = torch.rand(2, 1, 7, 11, dtype=torch.float64)
    for reference, closed in ((tv_loss, tv_loss_and_gradient),
                              (lambda a: temporal_loss(a, warped, mask),
                               lambda a: temporal_loss_and_gradient(a, warped, mask))):
        expected = reference(x)
        (grad,) = torch.autograd.grad(expected.sum(), x)
        term = closed(x.detach())
        assert torch.allclose(term.loss, expected.detach(), rtol=1e-12, atol=0)
        assert torch.allclose(term.gradient, grad, rtol=1e-12, atol=1e-15)
