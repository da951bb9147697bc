"""Tests of `depthnb.losses` against independent references.

Oracles used here never call the function under test: OpenCV (`cv2.blur` / `cv2.GaussianBlur` with
`BORDER_REFLECT_101`, which is torch's `'reflect'` padding, and `cv2.getGaussianKernel`), monodepth2's SSIM
written out with `nn.ReflectionPad2d` + `nn.AvgPool2d` (values and autograd gradients), kornia
(`metrics.ssim`, `losses.total_variation`), numpy loops of the papers' equations (Reciprocal eq. 2, 3, 5, 6, 8;
SGDepth eq. 3, 4; LSIM eq. 3–6), numpy bilinear / area resampling, and closed forms worked out by hand.
Gradients are checked with `torch.autograd.gradcheck` in float64. Every test that takes the `device` fixture
runs on CPU, and on CUDA when there is one.
"""
from __future__ import annotations

import contextlib

import cv2
import kornia
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from depthnb.core import DepthnbInputError
from depthnb.geometry import lr_occlusion, mirror, resize_disparity, warp_by_disparity
from depthnb.losses import (edge_aware_smoothness, feature_reconstruction, gaussian_window, log_l1, lr_consistency,
                            masked_mean, min_reprojection, multiscale_epe, occlusion_bce, photometric_error, ssim,
                            total_variation)
from depthnb.models import DispNet

from conftest import CUDA, gen, np_, rand  # noqa: F401  (the device fixture comes from conftest)
C1, C2 = 0.01 ** 2, 0.03 ** 2


def tol(dtype, f64=1e-12, f32=2e-6):
    return dict(rtol=0, atol=f64 if dtype == torch.float64 else f32)


NONDET = 1e-10 if CUDA else 0.


# ----------------------------------------------------------------------------------------------------------
# oracles

def box_blur(a):
    return cv2.blur(np.ascontiguousarray(a), (3, 3), borderType=cv2.BORDER_REFLECT_101)


def gauss_blur(size, sigma):
    return lambda a: cv2.GaussianBlur(np.ascontiguousarray(a), (size, size), sigmaX=sigma, sigmaY=sigma,
                                      borderType=cv2.BORDER_REFLECT_101)


def ssim_oracle(x, y, blur=box_blur):
    "SSIM map (LSIM eq. 3) per image and channel, float64 numpy, local moments from an OpenCV filter."
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    out = np.empty_like(x)
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            a, d = x[b, c], y[b, c]
            mx, my = blur(a), blur(d)
            vx, vy, cxy = blur(a * a) - mx * mx, blur(d * d) - my * my, blur(a * d) - mx * my
            out[b, c] = (2 * mx * my + C1) * (2 * cxy + C2) / ((mx * mx + my * my + C1) * (vx + vy + C2))
    return out


class Monodepth2SSIM(nn.Module):
    "monodepth2's `layers.SSIM`, returning the SSIM map itself (monodepth2 returns clamp((1 − SSIM)/2, 0, 1))."
    def __init__(self):
        super().__init__()
        self.mu_x_pool, self.mu_y_pool = nn.AvgPool2d(3, 1), nn.AvgPool2d(3, 1)
        self.sig_x_pool, self.sig_y_pool, self.sig_xy_pool = nn.AvgPool2d(3, 1), nn.AvgPool2d(3, 1), nn.AvgPool2d(3, 1)
        self.refl = nn.ReflectionPad2d(1)

    def forward(self, x, y):
        x, y = self.refl(x), self.refl(y)
        mu_x, mu_y = self.mu_x_pool(x), self.mu_y_pool(y)
        sigma_x = self.sig_x_pool(x ** 2) - mu_x ** 2
        sigma_y = self.sig_y_pool(y ** 2) - mu_y ** 2
        sigma_xy = self.sig_xy_pool(x * y) - mu_x * mu_y
        n = (2 * mu_x * mu_y + C1) * (2 * sigma_xy + C2)
        d = (mu_x ** 2 + mu_y ** 2 + C1) * (sigma_x + sigma_y + C2)
        return n / d


def md2_reprojection(pred, target, alpha=0.85):
    "monodepth2's `compute_reprojection_loss` (Reciprocal eq. 2, SGDepth eq. 3) with its SSIM."
    l1 = (target - pred).abs().mean(1, True)
    s = torch.clamp((1 - Monodepth2SSIM()(pred, target)) / 2, 0, 1).mean(1, True)
    return alpha * s + (1 - alpha) * l1


def np_resize_bilinear(a, h, w):
    "Bilinear resize of a 2-D array with half-pixel centres (= F.interpolate(align_corners=False))."
    def taps(n_out, n_in):
        s = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.)
        i0 = np.minimum(np.floor(s).astype(int), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), s - i0
    y0, y1, ly = taps(h, a.shape[0])
    x0, x1, lx = taps(w, a.shape[1])
    rows = lambda yy: a[yy][:, x0] * (1 - lx) + a[yy][:, x1] * lx
    return rows(y0) * (1 - ly)[:, None] + rows(y1) * ly[:, None]


def np_area(a, h, w):
    "Adaptive average pooling of a 2-D array to h×w (windows [floor(i·H/h), ceil((i+1)·H/h)))."
    H, W = a.shape
    out = np.empty((h, w))
    for i in range(h):
        for j in range(w):
            out[i, j] = a[i * H // h:-(-(i + 1) * H // h), j * W // w:-(-(j + 1) * W // w)].mean()
    return out


def textured(b, c, h, w, seed, sigma=1.2):
    "Smooth random texture in [0, 1] (Gaussian-blurred noise), float64 B×C×H×W."
    noise = np_(rand(b, c, h, w, seed=seed))
    out = np.stack([np.stack([gauss_blur(0, sigma)(noise[i, k]) for k in range(c)]) for i in range(b)])
    out = (out - out.min()) / (out.max() - out.min())
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------------------------------------
# box SSIM: OpenCV oracle, monodepth2's formulation (values and gradients), gradcheck

BOX_SHAPES = [(1, 1, 2, 2), (1, 3, 2, 5), (2, 3, 5, 2), (1, 1, 3, 4), (2, 3, 7, 9), (1, 2, 11, 13), (3, 1, 6, 15)]


@pytest.mark.parametrize('shape', BOX_SHAPES, ids=lambda s: 'x'.join(map(str, s)))
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_box_ssim_matches_opencv(device, shape, dtype):
    x, y = rand(*shape, seed=1), rand(*shape, seed=2)
    y = (0.6 * x + 0.4 * y)  # correlated, so the map spans a useful range
    s = ssim(x.to(dtype).to(device), y.to(dtype).to(device))
    assert s.shape == shape and s.dtype == dtype and s.device.type == device.type
    ref = ssim_oracle(np_(x.to(dtype)), np_(y.to(dtype)))
    if dtype == torch.float64:
        np.testing.assert_allclose(np_(s), ref, rtol=0, atol=1e-12)
    else:  # float32 round-off (σ² = E[x²] − μ² cancels) is of the size monodepth2's float32 SSIM makes
        err_md2 = np.abs(np_(Monodepth2SSIM()(x.float(), y.float())) - ref).max()
        np.testing.assert_allclose(np_(s), ref, rtol=0, atol=max(2e-5, 2 * err_md2))


def test_box_ssim_default_window_is_box(device):
    x, y = rand(1, 3, 6, 7, seed=3).to(device), rand(1, 3, 6, 7, seed=4).to(device)
    assert torch.equal(ssim(x, y), ssim(x, y, window='box', size=3))


@pytest.mark.parametrize('shape', BOX_SHAPES, ids=lambda s: 'x'.join(map(str, s)))
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_box_ssim_values_and_gradients_match_monodepth2(device, shape, dtype):
    x0, y0 = rand(*shape, seed=5), rand(*shape, seed=6)
    y0 = 0.5 * x0 + 0.5 * y0
    wt = rand(*shape, seed=7, lo=-1., hi=1.)
    md2 = Monodepth2SSIM().to(device)

    def run(f, dt):
        x = x0.to(dt).to(device).requires_grad_()
        y = y0.to(dt).to(device).requires_grad_()
        s = f(x, y)
        gx, gy = torch.autograd.grad((s * wt.to(dt).to(device)).sum(), (x, y))
        gxm, gym = torch.autograd.grad(f(x, y).mean(), (x, y))
        return [np_(t) for t in (s, gx, gy, gxm, gym)]

    ours = run(ssim, dtype)
    ref = run(md2, torch.float64)        # float64 monodepth2 as the reference for both dtypes
    ref_same = run(md2, dtype)           # and monodepth2 in the same dtype, to size float32 round-off
    for name, a, r, r2 in zip(('ssim', 'grad x (weighted)', 'grad y (weighted)', 'grad x (mean)', 'grad y (mean)'),
                              ours, ref, ref_same):
        scale = max(1., np.abs(r).max())
        if dtype == torch.float64:
            np.testing.assert_allclose(a, r, rtol=0, atol=1e-11 * scale, err_msg=name)
        else:
            # ours in float32 is at least about as close to the float64 truth as monodepth2's float32 is
            err_md2 = np.abs(r2 - r).max()
            np.testing.assert_allclose(a, r, rtol=0, atol=max(3 * err_md2, 2e-5 * scale), err_msg=name)


@pytest.mark.parametrize('shape', [(1, 1, 2, 2), (1, 3, 3, 4), (1, 3, 7, 9), (2, 1, 2, 5), (3, 1, 5, 2)],
                         ids=lambda s: 'x'.join(map(str, s)))
def test_gradcheck_box_ssim(device, shape):
    x = rand(*shape, seed=8).to(device).requires_grad_()
    y = (0.5 * rand(*shape, seed=9) + 0.5 * x.detach().cpu()).to(device).requires_grad_()
    assert torch.autograd.gradcheck(ssim, (x, y), eps=1e-6, atol=1e-7, nondet_tol=NONDET)
    # only one input requiring grad (the hand-written backward returns None for the other)
    assert torch.autograd.gradcheck(ssim, (x, y.detach()), eps=1e-6, atol=1e-7, nondet_tol=NONDET)
    assert torch.autograd.gradcheck(ssim, (x.detach(), y), eps=1e-6, atol=1e-7, nondet_tol=NONDET)


def test_box_ssim_one_input_without_grad_gives_same_gradient(device):
    x = rand(2, 3, 6, 5, seed=10).to(device).requires_grad_()
    y = rand(2, 3, 6, 5, seed=11).to(device)
    g_one, = torch.autograd.grad(ssim(x, y).sum(), x)
    yy = y.clone().requires_grad_()
    g_both, g_y = torch.autograd.grad(ssim(x, yy).sum(), (x, yy))
    torch.testing.assert_close(g_one, g_both, rtol=0, atol=0)
    assert torch.isfinite(g_y).all()
    # symmetric: SSIM(x, y) = SSIM(y, x), so ∂/∂y of one is ∂/∂x of the other
    xx = y.clone().requires_grad_()
    g_swapped, = torch.autograd.grad(ssim(xx, x.detach()).sum(), xx)
    torch.testing.assert_close(g_swapped, g_y, rtol=0, atol=1e-12)


def _box_ssim_padded(x, y):
    "The box SSIM as first written: reflection-pad the stacked moments, then shifted adds (same op order)."
    s = F.pad(torch.cat((x, y, x * x, y * y, x * y), 1), (1, 1, 1, 1), mode='reflect')
    r = s[..., :-2] + s[..., 1:-1]
    r += s[..., 2:]
    m = r[..., :-2, :] + r[..., 1:-1, :]
    m += r[..., 2:, :]
    mx, my, sxx, syy, sxy = m.mul_(1 / 9).chunk(5, 1)
    mxy = mx * my
    a = mxy * 2 + C1
    bb = (sxy - mxy).mul_(2).add_(C2)
    mx2, my2 = mx * mx, my * my
    cc = (mx2 + my2).add_(C1)
    dd = (sxx + syy).sub_(mx2).sub_(my2).add_(C2)
    return a * bb * (cc * dd).reciprocal_()


@pytest.mark.parametrize('shape', BOX_SHAPES, ids=lambda s: 'x'.join(map(str, s)))
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_box_ssim_is_bitwise_the_padded_formulation(device, shape, dtype):
    "Adding the reflected neighbours at the borders instead of padding changes no value, not even round-off."
    x, y = (rand(*shape, seed=s).to(dtype).to(device) for s in (12, 13))
    assert torch.equal(ssim(x, y), _box_ssim_padded(x, y))


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_photometric_error_fused_dssim_matches_the_autograd_chain(device, dtype):
    """The box path computes clamp((1 − SSIM)/2, 0, 1) inside SSIM's autograd function; the values are those
    of the chain of torch ops exactly, and so is the clamp's gradient mask (on identical rows, SSIM ≈ 1)."""
    x0 = rand(2, 3, 9, 12, seed=27)
    y0 = 0.5 * x0 + 0.5 * rand(2, 3, 9, 12, seed=28)
    y0[..., :4, :] = x0[..., :4, :]                   # identical rows: (1 − SSIM)/2 is ±round-off: the clamp
    w = rand(2, 1, 9, 12, seed=29, lo=-1., hi=1.).to(dtype).to(device)
    grads = []
    for fused in (True, False):
        x = x0.to(dtype).to(device).requires_grad_()
        y = y0.to(dtype).to(device).requires_grad_()
        if fused:
            e = photometric_error(x, y, alpha=1.)
        else:
            e = ssim(x, y).neg().add(1).mul(0.5).clamp(0, 1).mean(1, keepdim=True)
        grads.append((e, *torch.autograd.grad((e * w).sum(), (x, y))))
    assert torch.equal(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1:], grads[1][1:]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14 if dtype == torch.float64 else 1e-6)


# ----------------------------------------------------------------------------------------------------------
# Gaussian SSIM: kornia, OpenCV, gaussian_window, gradcheck

@pytest.mark.parametrize('size', [3, 5, 7, 11, 13])
@pytest.mark.parametrize('sigma', [1.5, 0.8, 2.5])
def test_gaussian_window_matches_opencv(size, sigma):
    w = gaussian_window(size, sigma, dtype=torch.float64)
    assert w.shape == (size,)
    np.testing.assert_allclose(np_(w), cv2.getGaussianKernel(size, sigma)[:, 0], rtol=0, atol=1e-15)
    w32 = gaussian_window(size, sigma)
    assert w32.dtype == torch.float32
    np.testing.assert_allclose(np_(w32), cv2.getGaussianKernel(size, sigma)[:, 0], rtol=0, atol=1e-7)


@pytest.mark.parametrize('size,shape', [(11, (2, 3, 16, 13)), (11, (1, 1, 6, 6)), (7, (1, 3, 9, 12)), (7, (2, 2, 4, 5))])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_gaussian_ssim_matches_kornia(device, size, shape, dtype):
    x, y = rand(*shape, seed=12, dtype=dtype).to(device), rand(*shape, seed=13, dtype=dtype).to(device)
    y = 0.7 * x + 0.3 * y
    s = ssim(x, y, window='gaussian', size=size)
    assert s.shape == shape and s.dtype == dtype
    ref = kornia.metrics.ssim(x.double(), y.double(), size, eps=0.0)  # reflect padding, σ = 1.5
    torch.testing.assert_close(s.double(), ref, **tol(dtype, 1e-12, 3e-5))
    if size == 11:
        torch.testing.assert_close(ssim(x, y, window='gaussian'), s, rtol=0, atol=0)  # default size 11


@pytest.mark.parametrize('size,sigma', [(11, 1.5), (7, 1.5), (5, 1.0), (9, 2.0)])
def test_gaussian_ssim_matches_opencv(device, size, sigma):
    x, y = rand(2, 3, 12, 17, seed=14), rand(2, 3, 12, 17, seed=15)
    y = 0.6 * x + 0.4 * y
    s = ssim(x.to(device), y.to(device), window='gaussian', size=size, sigma=sigma)
    np.testing.assert_allclose(np_(s), ssim_oracle(np_(x), np_(y), gauss_blur(size, sigma)), rtol=0, atol=1e-12)


@pytest.mark.parametrize('size,shape', [(11, (1, 2, 6, 7)), (5, (2, 1, 3, 4)), (3, (1, 3, 2, 3))])
def test_gradcheck_gaussian_ssim(device, size, shape):
    x = rand(*shape, seed=16).to(device).requires_grad_()
    y = (0.5 * rand(*shape, seed=17) + 0.5 * x.detach().cpu()).to(device).requires_grad_()
    f = lambda a, b: ssim(a, b, window='gaussian', size=size)
    assert torch.autograd.gradcheck(f, (x, y), eps=1e-6, atol=1e-7, nondet_tol=NONDET)
    assert torch.autograd.gradcheck(f, (x, y.detach()), eps=1e-6, atol=1e-7, nondet_tol=NONDET)


# ----------------------------------------------------------------------------------------------------------
# SSIM closed forms

@pytest.mark.parametrize('window', ['box', 'gaussian'])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_ssim_of_image_with_itself_is_one(device, window, dtype):
    x = rand(2, 3, 9, 8, seed=18, dtype=dtype).to(device)
    torch.testing.assert_close(ssim(x, x, window), torch.ones_like(x), **tol(dtype, 1e-13, 1e-5))
    c = torch.full((1, 2, 7, 7), 0.37, dtype=dtype, device=device)  # flat: both variances are zero
    torch.testing.assert_close(ssim(c, c, window), torch.ones_like(c), **tol(dtype, 1e-13, 1e-5))


@pytest.mark.parametrize('window', ['box', 'gaussian'])
@pytest.mark.parametrize('c1,c2', [(0.2, 0.7), (0.0, 1.0), (0.0, 0.0), (1.0, 1.0), (0.5, 0.05)])
def test_ssim_of_two_constant_images(device, window, c1, c2):
    "σx = σy = σxy = 0, so SSIM = (2 c1 c2 + C1)/(c1² + c2² + C1): the contrast/structure factor is C2/C2 = 1."
    x = torch.full((2, 3, 8, 9), c1, dtype=torch.float64, device=device)
    y = torch.full((2, 3, 8, 9), c2, dtype=torch.float64, device=device)
    expected = (2 * c1 * c2 + C1) / (c1 ** 2 + c2 ** 2 + C1)
    torch.testing.assert_close(ssim(x, y, window), torch.full_like(x, expected), rtol=0, atol=1e-11)


def test_ssim_is_symmetric_and_bounded(device):
    x, y = rand(2, 3, 10, 11, seed=19).to(device), rand(2, 3, 10, 11, seed=20).to(device)
    for window in ('box', 'gaussian'):
        s = ssim(x, y, window)
        torch.testing.assert_close(s, ssim(y, x, window), rtol=0, atol=1e-15)
        assert (s <= 1).all() and (s >= -1).all()
    # anti-correlated content gives negative SSIM
    assert (ssim(x, 1 - x) < 0).float().mean() > 0.9


# ----------------------------------------------------------------------------------------------------------
# photometric error

@pytest.mark.parametrize('alpha', [0.85, 0.5, 0.0, 1.0])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_photometric_error_matches_monodepth2(device, alpha, dtype):
    x, y = rand(2, 3, 7, 10, seed=21), rand(2, 3, 7, 10, seed=22)
    y = 0.5 * x + 0.5 * y
    e = photometric_error(x.to(dtype).to(device), y.to(dtype).to(device), alpha=alpha)
    assert e.shape == (2, 1, 7, 10) and e.dtype == dtype
    ref = md2_reprojection(x, y, alpha)
    np.testing.assert_allclose(np_(e), np_(ref), rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-5)


def test_photometric_error_closed_forms(device):
    x, y = rand(2, 3, 6, 9, seed=23), rand(2, 3, 6, 9, seed=24)
    xd, yd = x.to(device), y.to(device)
    # identical images: zero error (SSIM = 1 up to round-off, clamped at 0)
    for window in ('box', 'gaussian'):
        torch.testing.assert_close(photometric_error(xd, xd, window=window), torch.zeros(2, 1, 6, 9, dtype=x.dtype,
                                   device=device), rtol=0, atol=1e-13)
    # alpha = 0: channel-mean L1, exactly
    l1 = np.abs(np_(x) - np_(y)).mean(1, keepdims=True)
    np.testing.assert_allclose(np_(photometric_error(xd, yd, alpha=0.)), l1, rtol=0, atol=1e-15)
    # alpha = 1: channel mean of clamp((1 − SSIM)/2, 0, 1), SSIM from the OpenCV oracle
    for window, blur in (('box', box_blur), ('gaussian', gauss_blur(11, 1.5))):
        s = np.clip((1 - ssim_oracle(np_(x), np_(y), blur)) / 2, 0, 1).mean(1, keepdims=True)
        np.testing.assert_allclose(np_(photometric_error(xd, yd, alpha=1., window=window)), s, rtol=0, atol=1e-12)
        # and the blend in between (Reciprocal eq. 2 / LSIM eq. 4, per pixel)
        np.testing.assert_allclose(np_(photometric_error(xd, yd, alpha=0.85, window=window)), 0.85 * s + 0.15 * l1,
                                   rtol=0, atol=1e-12)


def test_gradcheck_photometric_error(device):
    x = rand(1, 3, 6, 6, seed=25).to(device).requires_grad_()
    y = (0.5 * rand(1, 3, 6, 6, seed=26) + 0.5 * x.detach().cpu()).to(device).requires_grad_()
    for window, alpha in (('box', 0.85), ('box', 1.0), ('box', 0.0), ('gaussian', 0.85)):
        f = lambda a, b: photometric_error(a, b, alpha=alpha, window=window)
        assert torch.autograd.gradcheck(f, (x, y), eps=1e-6, atol=1e-7, nondet_tol=NONDET), (window, alpha)


# ----------------------------------------------------------------------------------------------------------
# masked mean

def test_masked_mean_matches_numpy(device):
    x = rand(2, 3, 5, 6, seed=27)
    xd = x.to(device)
    # no mask: plain mean
    np.testing.assert_allclose(np_(masked_mean(xd)), np_(x).mean(), rtol=0, atol=1e-15)
    # bool mask, same shape
    m = rand(2, 3, 5, 6, seed=28) > 0.4
    np.testing.assert_allclose(np_(masked_mean(xd, m.to(device))), np_(x)[m.numpy()].mean(), rtol=0, atol=1e-14)
    # float weights
    wt = rand(2, 3, 5, 6, seed=29)
    ref = (np_(x) * np_(wt)).sum() / np_(wt).sum()
    np.testing.assert_allclose(np_(masked_mean(xd, wt.to(device))), ref, rtol=0, atol=1e-14)
    # B×1×H×W bool mask over B×3×H×W: every channel of a masked pixel counts
    m1 = rand(2, 1, 5, 6, seed=30) > 0.5
    mb = np.broadcast_to(m1.numpy(), x.shape)
    np.testing.assert_allclose(np_(masked_mean(xd, m1.to(device))), np_(x)[mb].mean(), rtol=0, atol=1e-14)
    # B×1×H×W float weights over B×3×H×W
    w1 = rand(2, 1, 5, 6, seed=31)
    wb = np.broadcast_to(np_(w1), x.shape)
    np.testing.assert_allclose(np_(masked_mean(xd, w1.to(device))), (np_(x) * wb).sum() / wb.sum(), rtol=0, atol=1e-14)
    # all-zero mask: 0 (not NaN), with a finite zero gradient
    xg = xd.clone().requires_grad_()
    z = masked_mean(xg, torch.zeros(2, 1, 5, 6, dtype=torch.bool, device=device))
    assert z.item() == 0.
    z.backward()
    assert torch.equal(xg.grad, torch.zeros_like(xg))
    assert masked_mean(xd, torch.zeros(2, 3, 5, 6, device=device, dtype=x.dtype)).item() == 0.


def test_masked_mean_float32_keeps_dtype(device):
    x = rand(1, 3, 4, 4, seed=32, dtype=torch.float32).to(device)
    m = torch.ones(1, 1, 4, 4, dtype=torch.bool, device=device)
    r = masked_mean(x, m)
    assert r.dtype == torch.float32 and r.ndim == 0
    torch.testing.assert_close(r, x.mean())


def test_masked_mean_rejects_non_broadcastable_mask(device):
    x = rand(2, 3, 5, 6, seed=33).to(device)
    for bad in (torch.ones(2, 1, 5, 7), torch.ones(3, 1, 5, 6), torch.ones(2, 2, 5, 6)):
        with pytest.raises(DepthnbInputError, match='mask'):
            masked_mean(x, bad.bool().to(device))


# ----------------------------------------------------------------------------------------------------------
# edge-aware smoothness and total variation

def np_smoothness(disp, img):
    "Reciprocal eq. 3 / SGDepth eq. 4 with monodepth2's normalisation d / (mean(d) + 1e-7), per image, numpy loops."
    b, _, h, w = disp.shape
    sx = sy = 0.
    for i in range(b):
        d = disp[i, 0] / (disp[i, 0].mean() + 1e-7)
        for r in range(h):
            for c in range(w):
                if c + 1 < w:
                    sx += abs(d[r, c + 1] - d[r, c]) * np.exp(-np.abs(img[i, :, r, c + 1] - img[i, :, r, c]).mean())
                if r + 1 < h:
                    sy += abs(d[r + 1, c] - d[r, c]) * np.exp(-np.abs(img[i, :, r + 1, c] - img[i, :, r, c]).mean())
    return sx / (b * h * (w - 1)) + sy / (b * (h - 1) * w)


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_edge_aware_smoothness_matches_numpy(device, dtype):
    disp = rand(2, 1, 6, 7, seed=34, lo=0.5, hi=5.)
    img = rand(2, 3, 6, 7, seed=35)
    s = edge_aware_smoothness(disp.to(dtype).to(device), img.to(dtype).to(device))
    assert s.ndim == 0 and s.dtype == dtype
    np.testing.assert_allclose(np_(s), np_smoothness(np_(disp.to(dtype)), np_(img.to(dtype))), rtol=1e-12 if
                               dtype == torch.float64 else 1e-5, atol=0)


def test_edge_aware_smoothness_closed_forms(device):
    disp = rand(2, 1, 6, 8, seed=36, lo=0.5, hi=5.).to(device)
    img = rand(2, 3, 6, 8, seed=37).to(device)
    # constant disparity: zero
    assert edge_aware_smoothness(torch.full_like(disp, 3.), img).item() == 0.
    # mean normalisation: invariant to scaling the disparity (per image)
    k = torch.tensor([2.5, 0.1], dtype=disp.dtype, device=device).view(2, 1, 1, 1)
    torch.testing.assert_close(edge_aware_smoothness(k * disp, img), edge_aware_smoothness(disp, img), rtol=1e-6, atol=0)
    # flat image: weights are 1, so the loss is the mean absolute gradient of the normalised disparity
    flat = torch.full_like(img, 0.3)
    d = np_(disp) / np_(disp).mean((2, 3), keepdims=True)
    ref = np.abs(np.diff(d, axis=3)).mean() + np.abs(np.diff(d, axis=2)).mean()
    np.testing.assert_allclose(np_(edge_aware_smoothness(disp, flat)), ref, rtol=1e-6)
    # a vertical image edge damps the horizontal disparity step that sits on it
    step = torch.ones(1, 1, 4, 8, dtype=torch.float64, device=device)
    step[..., 4:] = 2.
    edge = torch.zeros(1, 3, 4, 8, dtype=torch.float64, device=device)
    edge[..., 4:] = 1.
    assert edge_aware_smoothness(step, edge) < edge_aware_smoothness(step, torch.zeros_like(edge))
    torch.testing.assert_close(edge_aware_smoothness(step, edge), edge_aware_smoothness(step, torch.zeros_like(edge))
                               * np.exp(-1.), rtol=1e-12, atol=0)


def test_gradcheck_edge_aware_smoothness(device):
    disp = rand(2, 1, 5, 6, seed=38, lo=0.5, hi=4.).to(device).requires_grad_()
    img = rand(2, 3, 5, 6, seed=39).to(device)
    assert torch.autograd.gradcheck(lambda d: edge_aware_smoothness(d, img), (disp,), eps=1e-6, atol=1e-7,
                                    nondet_tol=NONDET)


def test_edge_aware_smoothness_single_row_is_finite(device):
    disp = rand(1, 1, 1, 6, seed=40, lo=0.5, hi=4.).to(device)
    img = rand(1, 3, 1, 6, seed=41).to(device)
    d = np_(disp) / np_(disp).mean()
    ref = (np.abs(np.diff(d, axis=3)) * np.exp(-np.abs(np.diff(np_(img), axis=3)).mean(1, keepdims=True))).mean()
    np.testing.assert_allclose(np_(edge_aware_smoothness(disp, img)), ref, rtol=1e-6)


def np_tv_sum(d):
    "LSIM eq. 6 summed over pixels and channels, per image; numpy loops."
    b, c, h, w = d.shape
    out = np.zeros(b)
    for i in range(b):
        for k in range(c):
            for r in range(h):
                for col in range(w):
                    if r + 1 < h: out[i] += abs(d[i, k, r + 1, col] - d[i, k, r, col])
                    if col + 1 < w: out[i] += abs(d[i, k, r, col + 1] - d[i, k, r, col])
    return out


@pytest.mark.parametrize('shape', [(2, 1, 6, 7), (3, 2, 4, 9), (1, 1, 2, 2)], ids=lambda s: 'x'.join(map(str, s)))
def test_total_variation_matches_kornia_and_numpy(device, shape):
    d = rand(*shape, seed=42, lo=0., hi=10.)
    dd = d.to(device)
    b = shape[0]
    # 'sum': the printed equation, summed over pixels (and channels), averaged over the batch (see the docstring)
    tv = total_variation(dd, reduction='sum')
    assert tv.ndim == 0
    np.testing.assert_allclose(np_(tv), np_tv_sum(np_(d)).mean(), rtol=1e-13)
    k = kornia.losses.total_variation(dd, reduction='sum')   # B×C, per image and channel
    np.testing.assert_allclose(np_(tv), np_(k).sum() / b, rtol=1e-13)
    # 'mean' (default): each difference map averaged over its own pixels
    dn = np_(d)
    ref = np.abs(np.diff(dn, axis=2)).mean() + np.abs(np.diff(dn, axis=3)).mean()
    np.testing.assert_allclose(np_(total_variation(dd)), ref, rtol=1e-13)
    np.testing.assert_allclose(np_(total_variation(dd, reduction='mean')), ref, rtol=1e-13)
    np.testing.assert_allclose(np_(total_variation(dd)), np_(kornia.losses.total_variation(dd, reduction='mean')).mean(),
                               rtol=1e-13)


def test_total_variation_closed_forms(device):
    # a ramp d = a·x + b·y on H×W: sum over pixels = |b|·(H−1)·W + |a|·H·(W−1); mean = |a| + |b|
    h, w, a, bb = 5, 7, 0.3, -1.2
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    d = torch.from_numpy(a * xs + bb * ys)[None, None].expand(2, 1, h, w).to(device)
    torch.testing.assert_close(total_variation(d, 'sum').item(), abs(bb) * (h - 1) * w + abs(a) * h * (w - 1),
                               rtol=1e-12, atol=0)
    torch.testing.assert_close(total_variation(d).item(), abs(a) + abs(bb), rtol=1e-12, atol=0)
    assert total_variation(torch.full((2, 1, 4, 4), 2., device=device)).item() == 0.


def test_total_variation_mean_single_row(device):
    d = rand(2, 1, 1, 6, seed=43).to(device)
    ref = kornia.losses.total_variation(d, reduction='mean').mean()
    torch.testing.assert_close(total_variation(d), ref)


# ----------------------------------------------------------------------------------------------------------
# LR consistency (LSIM eq. 5)

def np_lr(disp_l, disp_r):
    "mean over pixels whose match x − d_l(x) lies in [0, W−1] of |d_l(x) − d_r(x − d_l(x))| (linear interpolation)."
    b, _, h, w = disp_l.shape
    xs = np.arange(w, dtype=np.float64)
    tot, n = 0., 0
    for i in range(b):
        for r in range(h):
            for x in range(w):
                u = x - disp_l[i, 0, r, x]
                if 0 <= u <= w - 1:
                    tot += abs(disp_l[i, 0, r, x] - np.interp(u, xs, disp_r[i, 0, r]))
                    n += 1
    return tot / max(n, 1)


def _frac_away(shape, seed, ints=(0, 5), lo=0.2, hi=0.8):
    "Integer part + fraction in [lo, hi]: never near an integer, so no match sits on the image border."
    return torch.randint(*ints, shape, generator=gen(seed)).double() + rand(*shape, seed=seed + 100, lo=lo, hi=hi)


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_lr_consistency_matches_numpy(device, dtype):
    shape = (2, 1, 5, 12)
    dl, dr = _frac_away(shape, 44).to(dtype), _frac_away(shape, 45).to(dtype)
    r = lr_consistency(dl.to(device), dr.to(device))
    assert r.ndim == 0 and r.dtype == dtype
    np.testing.assert_allclose(np_(r), np_lr(np_(dl), np_(dr)), rtol=1e-12 if dtype == torch.float64 else 1e-5)
    # the right view's term through mirroring: |d_r(x) − d_l(x + d_r(x))| over x + d_r(x) in [0, W−1]
    rr = lr_consistency(mirror(dr.to(device)), mirror(dl.to(device)))
    dln, drn = np_(dl), np_(dr)
    xs = np.arange(shape[-1], dtype=np.float64)
    errs = [abs(drn[i, 0, y, x] - np.interp(x + drn[i, 0, y, x], xs, dln[i, 0, y]))
            for i in range(2) for y in range(5) for x in range(12) if x + drn[i, 0, y, x] <= 11]
    np.testing.assert_allclose(np_(rr), np.mean(errs), rtol=1e-12 if dtype == torch.float64 else 1e-5)


def test_lr_consistency_of_consistent_scene_is_zero(device):
    "A fronto-parallel box (disparity 8, columns [20, 30)) before a wall (2): both views' maps agree away from edges."
    h, w = 4, 40
    dl = torch.full((1, 1, h, w), 2., dtype=torch.float64)
    dl[..., 20:30] = 8.
    dr = torch.full((1, 1, h, w), 2., dtype=torch.float64)
    dr[..., 12:22] = 8.
    # every left pixel either matches exactly or is occluded (the wall pixels 22..29 − 2 = 20..27 hit the box in the
    # right view) — compare with the numpy loop, which knows nothing about occlusion either
    np.testing.assert_allclose(np_(lr_consistency(dl.to(device), dr.to(device))), np_lr(np_(dl), np_(dr)), rtol=1e-12)
    const = torch.full((2, 1, 5, 9), 3., device=device)
    assert lr_consistency(const, const).item() == 0.


# ----------------------------------------------------------------------------------------------------------
# feature reconstruction (DFR)

@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_feature_reconstruction_matches_numpy(device, dtype):
    a, b = rand(2, 16, 4, 5, seed=46, lo=-1., hi=1.), rand(2, 16, 4, 5, seed=47, lo=-1., hi=1.)
    an, bn = np_(a.to(dtype)), np_(b.to(dtype))
    ad, bd = a.to(dtype).to(device), b.to(dtype).to(device)
    t = dict(rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-5)
    cos = 1 - (an * bn).sum(1, keepdims=True) / (np.sqrt((an ** 2).sum(1, keepdims=True)) *
                                                np.sqrt((bn ** 2).sum(1, keepdims=True)))
    for metric, ref in (('cosine', cos), ('l1', np.abs(an - bn).mean(1, keepdims=True)),
                        ('l2', np.sqrt(((an - bn) ** 2).sum(1, keepdims=True)))):
        e = feature_reconstruction(ad, bd, metric)
        assert e.shape == (2, 1, 4, 5) and e.dtype == dtype, metric
        np.testing.assert_allclose(np_(e), ref, err_msg=metric, **t)
    assert torch.equal(feature_reconstruction(ad, bd), feature_reconstruction(ad, bd, 'cosine'))
    # cosine ignores the feature magnitude; parallel / antiparallel features give 0 / 2
    torch.testing.assert_close(feature_reconstruction(ad, 3 * ad), torch.zeros(2, 1, 4, 5, dtype=dtype, device=device),
                               **tol(dtype, 1e-12, 1e-6))
    torch.testing.assert_close(feature_reconstruction(ad, -ad), torch.full((2, 1, 4, 5), 2., dtype=dtype, device=device),
                               **tol(dtype, 1e-12, 1e-6))


def test_feature_reconstruction_gradients_finite_at_a_perfect_match(device):
    a = rand(1, 8, 3, 4, seed=48, lo=-1., hi=1.).to(device)
    for metric in ('cosine', 'l1', 'l2'):
        b = a.clone().requires_grad_()
        feature_reconstruction(a, b, metric).sum().backward()
        assert torch.isfinite(b.grad).all(), metric


# ----------------------------------------------------------------------------------------------------------
# distillation (Reciprocal eq. 6 and 8)

@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_log_l1_matches_numpy(device, dtype):
    p, t = rand(2, 1, 5, 6, seed=49, lo=0., hi=20.).to(dtype), rand(2, 1, 5, 6, seed=50, lo=0., hi=20.).to(dtype)
    occ_hard = (rand(2, 1, 5, 6, seed=51) > 0.7).to(dtype)
    occ_soft = rand(2, 1, 5, 6, seed=52).to(dtype)
    err = np.log(1 + np.abs(np_(p) - np_(t)))
    t_ = dict(rtol=1e-12 if dtype == torch.float64 else 1e-6, atol=0)
    # eq. 8: plain mean
    np.testing.assert_allclose(np_(log_l1(p.to(device), t.to(device))), err.mean(), **t_)
    # eq. 6: Σ err·(1 − O) / Σ (1 − O), hard and soft occlusion maps
    for occ in (occ_hard, occ_soft):
        ref = (err * (1 - np_(occ))).sum() / (1 - np_(occ)).sum()
        np.testing.assert_allclose(np_(log_l1(p.to(device), t.to(device), occ.to(device))), ref, **t_)
    # fully occluded: 0
    assert log_l1(p.to(device), t.to(device), torch.ones_like(p).to(device)).item() == 0.
    # gradient: d/dp log(1 + |p − t|) = sign(p − t)/(1 + |p − t|), over the pixel count
    pg = p.to(device).clone().requires_grad_()
    log_l1(pg, t.to(device)).backward()
    ref_g = np.sign(np_(p) - np_(t)) / (1 + np.abs(np_(p) - np_(t))) / p.numel()
    np.testing.assert_allclose(np_(pg.grad), ref_g, rtol=1e-10 if dtype == torch.float64 else 1e-5, atol=0)


# ----------------------------------------------------------------------------------------------------------
# minimum reprojection and auto-masking (SGDepth eq. 3, monodepth2)

def test_min_reprojection_matches_numpy(device):
    S, shape = 3, (2, 1, 4, 5)
    errs = [rand(*shape, seed=53 + s).to(device) for s in range(S)]
    ids = [rand(*shape, seed=63 + s).to(device) for s in range(S)]
    en, idn = np.stack([np_(e) for e in errs]), np.stack([np_(e) for e in ids])
    ref_min, ref_mask = en.min(0), en.min(0) < idn.min(0)
    assert 0 < ref_mask.sum() < ref_mask.size   # both outcomes occur
    for e_in, i_in in ((errs, ids), (torch.stack(errs), torch.stack(ids)), (tuple(errs), torch.stack(ids))):
        best, mask = min_reprojection(e_in, i_in)
        assert best.shape == shape and mask.shape == shape and mask.dtype == torch.bool
        np.testing.assert_array_equal(np_(best), ref_min)
        np.testing.assert_array_equal(mask.cpu().numpy(), ref_mask)
    # without identity errors: all True
    best, mask = min_reprojection(errs)
    np.testing.assert_array_equal(np_(best), ref_min)
    assert mask.all() and mask.shape == shape
    # a single source frame
    best, mask = min_reprojection([errs[0]], [ids[0]])
    np.testing.assert_array_equal(np_(best), np_(errs[0]))
    np.testing.assert_array_equal(mask.cpu().numpy(), np_(errs[0]) < np_(ids[0]))
    # ties are not "strictly below": masked out
    _, mask = min_reprojection(errs, errs)
    assert not mask.any()
    # the loss of SGDepth eq. 3: masked mean of the minimum
    loss = masked_mean(*min_reprojection(errs, ids))
    np.testing.assert_allclose(np_(loss), ref_min[ref_mask].mean(), rtol=1e-13)


def test_min_reprojection_gradient_goes_to_the_best_frame(device):
    errs = [rand(1, 1, 3, 4, seed=73 + s).to(device).requires_grad_() for s in range(2)]
    best, _ = min_reprojection(errs)
    best.sum().backward()
    first = (np_(errs[0]) < np_(errs[1])).astype(np.float64)
    np.testing.assert_array_equal(np_(errs[0].grad), first)
    np.testing.assert_array_equal(np_(errs[1].grad), 1 - first)


# ----------------------------------------------------------------------------------------------------------
# supervised multi-scale EPE and occlusion BCE (DFR)

def np_multiscale_epe(preds, gt, valid, weights):
    H, W = gt.shape[-2:]
    total = 0.
    for p, w in zip(preds, weights):
        errs = []
        for i in range(gt.shape[0]):
            up = p[i, 0] if p.shape[-2:] == (H, W) else np_resize_bilinear(p[i, 0], H, W) * (W / p.shape[-1])
            errs.append(np.abs(up - gt[i, 0])[valid[i, 0]])
        total += w * np.concatenate(errs).mean()
    return total


def _gt_with_holes(shape, seed):
    gt = rand(*shape, seed=seed, lo=2., hi=30.)
    holes = rand(*shape, seed=seed + 1)
    gt[holes < 0.1] = 0.
    gt[holes > 0.92] = float('inf')
    return gt


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_multiscale_epe_matches_numpy(device, dtype):
    B, H, W = 2, 8, 12
    gt = _gt_with_holes((B, 1, H, W), 80)
    preds = [rand(B, 1, H // 2 ** s, W // 2 ** s, seed=82 + s, lo=1., hi=30. / 2 ** s) for s in range(3)]
    preds.append(rand(B, 1, 3, 5, seed=90, lo=1., hi=5.))   # a size that does not divide (bilinear, not pooling)
    valid = np.isfinite(np_(gt)) & (np_(gt) > 0)
    t = dict(rtol=1e-12 if dtype == torch.float64 else 1e-5, atol=0)
    pd = [p.to(dtype).to(device) for p in preds]
    got = multiscale_epe(pd, gt.to(dtype).to(device))
    assert got.ndim == 0 and torch.isfinite(got)
    np.testing.assert_allclose(np_(got), np_multiscale_epe([np_(p.to(dtype)) for p in preds], np_(gt.to(dtype)),
                                                           valid, [1, .5, .25, .125]), **t)
    # explicit weights and explicit valid mask
    v2 = torch.from_numpy(valid) & (rand(B, 1, H, W, seed=91) > 0.3)
    got = multiscale_epe(pd, gt.to(dtype).to(device), v2.to(device), weights=[0.3, 1., 2., 0.])
    np.testing.assert_allclose(np_(got), np_multiscale_epe([np_(p.to(dtype)) for p in preds], np_(gt.to(dtype)),
                                                           v2.numpy(), [0.3, 1., 2., 0.]), **t)
    # a single full-resolution tensor
    got = multiscale_epe(pd[0], gt.to(dtype).to(device))
    np.testing.assert_allclose(np_(got), np.abs(np_(preds[0].to(dtype)) - np_(gt.to(dtype)))[valid].mean(), **t)


def test_multiscale_epe_closed_form_and_invalid_pixels(device):
    # constant gt d: the coarse predictions d·(w/W) (their own pixel units) are exact at every scale
    gt = torch.full((1, 1, 8, 16), 6., dtype=torch.float64, device=device)
    preds = [torch.full((1, 1, 8 >> s, 16 >> s), 6. / 2 ** s, dtype=torch.float64, device=device) for s in range(4)]
    assert multiscale_epe(preds, gt).item() == 0.
    # piecewise-constant gt (2×2 blocks): the area-downsampled coarse map, upsampled, is exact inside the flat parts
    gt = torch.zeros(1, 1, 8, 16, dtype=torch.float64, device=device)
    gt[..., :, :8], gt[..., :, 8:] = 4., 10.
    coarse = torch.nn.functional.avg_pool2d(gt, 2) / 2          # disparity in coarse pixels
    err = multiscale_epe([gt, coarse], gt, weights=[1., 1.])
    up = np_resize_bilinear(np_(coarse)[0, 0], 8, 16) * 2
    np.testing.assert_allclose(np_(err), np.abs(up - np_(gt)[0, 0]).mean(), rtol=1e-13)
    assert np.abs(up - np_(gt)[0, 0])[:, :6].max() == 0 and np.abs(up - np_(gt)[0, 0])[:, 10:].max() == 0
    # invalid gt pixels (0, inf, nan) are excluded: a wild prediction there changes nothing, gradients stay finite
    gt = _gt_with_holes((1, 1, 6, 7), 92).to(device)
    gt[0, 0, 0, 0] = float('nan')
    p = rand(1, 1, 6, 7, seed=94, lo=2., hi=30.).to(device)
    bad = ~(torch.isfinite(gt) & (gt > 0))
    p2 = torch.where(bad, torch.full_like(p, 1e6), p).requires_grad_()
    torch.testing.assert_close(multiscale_epe(p2, gt), multiscale_epe(p, gt), rtol=1e-12, atol=0)
    multiscale_epe(p2, gt).backward()
    assert torch.isfinite(p2.grad).all() and (p2.grad[bad] == 0).all()


def np_bce_logits(z, t):
    return np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_occlusion_bce_matches_numpy(device, dtype):
    B, H, W = 2, 8, 12
    gt = (rand(B, 1, H, W, seed=95) > 0.7).to(torch.float64)
    preds = [rand(B, 1, H // 2 ** s, W // 2 ** s, seed=96 + s, lo=-4., hi=4.) for s in range(3)]
    preds.append(rand(B, 1, 3, 5, seed=99, lo=-4., hi=4.))   # non-dividing size: overlapping area windows
    t = dict(rtol=1e-12 if dtype == torch.float64 else 1e-5, atol=0)
    pd, gd = [p.to(dtype).to(device) for p in preds], gt.to(dtype).to(device)
    # one full-resolution map
    np.testing.assert_allclose(np_(occlusion_bce(pd[0], gd)), np_bce_logits(np_(preds[0]), np_(gt)).mean(), **t)
    # multi-scale: soft targets (the occluded fraction), weights 1/2^s
    ref = 0.
    for s, p in enumerate(preds):
        tgt = np.stack([np_area(np_(gt)[i, 0], *p.shape[-2:]) for i in range(B)])[:, None]
        ref += 0.5 ** s * np_bce_logits(np_(p.to(dtype)), tgt).mean()
    np.testing.assert_allclose(np_(occlusion_bce(pd, gd)), ref, **t)
    # with a valid mask: coarse valid = area fraction of valid > 0.5
    valid = rand(B, 1, H, W, seed=100) > 0.35
    ref = 0.
    for s, p in enumerate(preds):
        tgt = np.stack([np_area(np_(gt)[i, 0], *p.shape[-2:]) for i in range(B)])[:, None]
        v = np.stack([np_area(valid.numpy()[i, 0].astype(np.float64), *p.shape[-2:]) for i in range(B)])[:, None] > 0.5
        ref += 0.5 ** s * np_bce_logits(np_(p.to(dtype)), tgt)[v].mean()
    np.testing.assert_allclose(np_(occlusion_bce(pd, gd, valid.to(device))), ref, **t)
    # explicit weights
    ref = sum(w * np_bce_logits(np_(p.to(dtype)), np.stack([np_area(np_(gt)[i, 0], *p.shape[-2:]) for i in range(B)])
                                [:, None]).mean() for w, p in zip((0., 2., 1., .5), preds))
    np.testing.assert_allclose(np_(occlusion_bce(pd, gd, weights=(0., 2., 1., .5))), ref, **t)


def test_occlusion_bce_soft_target_optimum(device):
    "BCE against a soft target q is minimised by the logit log(q / (1 − q)): the coarse optimum is the area fraction."
    gt = torch.zeros(1, 1, 4, 4, dtype=torch.float64, device=device)
    gt[..., :2, :1] = 1.   # top-left 2×2 block: occluded fraction 1/2; others 0
    z = torch.zeros(1, 1, 2, 2, dtype=torch.float64, device=device, requires_grad=True)
    occlusion_bce([gt.clone() * 20 - 10, z], gt).backward()
    # d BCE/dz = (σ(z) − q)/n, at z = 0: (0.5 − q)/4, times the weight 1/2
    q = np.array([[0.5, 0.], [0., 0.]])
    np.testing.assert_allclose(np_(z.grad)[0, 0], 0.5 * (0.5 - q) / 4, rtol=1e-12)


# ----------------------------------------------------------------------------------------------------------
# optimisation sanity check: photometric error + warp recovers a known disparity

def test_gradient_descent_recovers_constant_disparity(device):
    H, W, D = 12, 32, 3
    tex = textured(1, 3, H, W + D, seed=101).float()
    left, right = tex[..., :W].to(device), tex[..., D:D + W].to(device)   # left(x) = right(x − D)
    w0, v0 = warp_by_disparity(right, torch.full((1, 1, H, W), float(D), device=device))
    torch.testing.assert_close(w0[..., D:], left[..., D:], rtol=0, atol=1e-6)   # the pair is consistent
    disp = torch.full((1, 1, H, W), 1.5, device=device, requires_grad=True)
    opt = torch.optim.Adam([disp], lr=0.05)

    def loss_fn():
        warped, valid = warp_by_disparity(right, disp)
        return masked_mean(photometric_error(left, warped), valid)

    def err():
        return (disp.detach() - D)[..., D:].abs().mean().item()

    l0, e0 = loss_fn().item(), err()
    for _ in range(120):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    l1, e1 = loss_fn().item(), err()
    assert l1 < 0.1 * l0, (l0, l1)
    assert e1 < 0.2 * e0, (e0, e1)
    assert (disp.detach() - D)[..., D:].abs().median().item() < 0.05


# ----------------------------------------------------------------------------------------------------------
# bad input: DepthnbInputError naming the argument

def _t(*shape, dtype=torch.float32):
    return torch.rand(*shape, generator=gen(7)).to(dtype)


BAD = [
    ('ssim 3-D x', lambda: ssim(_t(3, 8, 8), _t(3, 8, 8)), r'\bx\b'),
    ('ssim 5-D y', lambda: ssim(_t(1, 3, 8, 8), _t(1, 1, 3, 8, 8)), r'\by\b'),
    ('ssim integer x', lambda: ssim(torch.ones(1, 3, 8, 8, dtype=torch.uint8), _t(1, 3, 8, 8)), r'\bx\b'),
    ('ssim size mismatch', lambda: ssim(_t(1, 3, 8, 8), _t(1, 3, 8, 9)), r'x and y'),
    ('ssim channel mismatch', lambda: ssim(_t(1, 3, 8, 8), _t(1, 1, 8, 8)), r'x and y'),
    ('ssim batch mismatch', lambda: ssim(_t(2, 3, 8, 8), _t(1, 3, 8, 8)), r'x and y'),
    ('ssim unknown window', lambda: ssim(_t(1, 3, 8, 8), _t(1, 3, 8, 8), window='tri'), 'window'),
    ('ssim box size 5', lambda: ssim(_t(1, 3, 8, 8), _t(1, 3, 8, 8), size=5), 'size'),
    ('ssim box 1 row', lambda: ssim(_t(1, 3, 1, 8), _t(1, 3, 1, 8)), r'\bx\b'),
    ('ssim box 1 col', lambda: ssim(_t(1, 3, 5, 1), _t(1, 3, 5, 1)), r'\bx\b'),
    ('ssim gaussian too small', lambda: ssim(_t(1, 3, 5, 9), _t(1, 3, 5, 9), window='gaussian'), r'\bx\b'),
    ('ssim gaussian 7 too small', lambda: ssim(_t(1, 3, 9, 3), _t(1, 3, 9, 3), 'gaussian', 7), r'\bx\b'),
    ('ssim gaussian even size', lambda: ssim(_t(1, 3, 9, 9), _t(1, 3, 9, 9), 'gaussian', 6), 'size'),
    ('ssim gaussian size 1', lambda: ssim(_t(1, 3, 9, 9), _t(1, 3, 9, 9), 'gaussian', 1), 'size'),
    ('photometric unknown window', lambda: photometric_error(_t(1, 3, 8, 8), _t(1, 3, 8, 8), window='x'), 'window'),
    ('photometric batch mismatch', lambda: photometric_error(_t(2, 3, 8, 8), _t(1, 3, 8, 8)), r'x and y'),
    ('smoothness 3-channel disp', lambda: edge_aware_smoothness(_t(1, 3, 8, 8), _t(1, 3, 8, 8)), 'disp'),
    ('smoothness 3-D disp', lambda: edge_aware_smoothness(_t(1, 8, 8), _t(1, 3, 8, 8)), 'disp'),
    ('smoothness 3-D img', lambda: edge_aware_smoothness(_t(1, 1, 8, 8), _t(3, 8, 8)), 'img'),
    ('smoothness size mismatch', lambda: edge_aware_smoothness(_t(1, 1, 8, 8), _t(1, 3, 8, 9)), 'disp and img'),
    ('tv unknown reduction', lambda: total_variation(_t(1, 1, 8, 8), reduction='none'), 'reduction'),
    ('tv 3-D', lambda: total_variation(_t(1, 8, 8)), 'disp'),
    ('feature unknown metric', lambda: feature_reconstruction(_t(1, 4, 8, 8), _t(1, 4, 8, 8), 'cos'), 'metric'),
    ('feature channel mismatch', lambda: feature_reconstruction(_t(1, 4, 8, 8), _t(1, 3, 8, 8)), 'f_l and f_r_warped'),
    ('feature 3-D', lambda: feature_reconstruction(_t(4, 8, 8), _t(4, 8, 8)), 'f_l'),
    ('log_l1 size mismatch', lambda: log_l1(_t(1, 1, 8, 8), _t(1, 1, 8, 9)), 'pred and target'),
    ('masked_mean bad mask', lambda: masked_mean(_t(2, 3, 8, 8), torch.ones(2, 1, 7, 8, dtype=torch.bool)), 'mask'),
    ('min_reprojection 4-D', lambda: min_reprojection(_t(3, 1, 8, 8)), 'errors'),
    ('min_reprojection 3 channels', lambda: min_reprojection([_t(1, 3, 8, 8)]), 'errors'),
    ('min_reprojection identity mismatch', lambda: min_reprojection([_t(1, 1, 8, 8)], [_t(1, 1, 8, 9)]),
     'identity_errors'),
    ('min_reprojection identity batch', lambda: min_reprojection([_t(2, 1, 8, 8)], [_t(1, 1, 8, 8)]),
     'identity_errors'),
    ('epe weights mismatch', lambda: multiscale_epe([_t(1, 1, 8, 8), _t(1, 1, 4, 4)], _t(1, 1, 8, 8), weights=[1.]),
     'weights'),
    ('epe gt 3 channels', lambda: multiscale_epe(_t(1, 1, 8, 8), _t(1, 3, 8, 8)), 'gt'),
    ('epe pred 3-D', lambda: multiscale_epe([_t(1, 1, 8, 8), _t(1, 4, 4)], _t(1, 1, 8, 8)), r'preds\[1\]'),
    ('epe pred batch', lambda: multiscale_epe([_t(2, 1, 4, 4)], _t(1, 1, 8, 8)), r'preds\[0\]'),
    ('bce gt 3-D', lambda: occlusion_bce(_t(1, 1, 8, 8), _t(1, 8, 8)), 'gt'),
    ('bce pred 2 channels', lambda: occlusion_bce([_t(1, 1, 8, 8), _t(1, 2, 4, 4)], _t(1, 1, 8, 8)), r'pred\[1\]'),
]


@pytest.mark.parametrize('fn,match', [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_raises_named_error(fn, match):
    with pytest.raises(DepthnbInputError, match=match):
        fn()


# Bad input found by these tests and fixed in the module; each entry says what used to happen.
BAD_FIXED = [
    ('photometric non-broadcastable shapes', lambda: photometric_error(_t(1, 3, 8, 8), _t(1, 3, 8, 9)), r'x and y',
     'photometric_error computes |x − y| before validating: 1×3×8×8 vs 1×3×8×9 raises a bare RuntimeError from '
     'torch broadcasting instead of DepthnbInputError'),
    ('photometric alpha=0 batch mismatch', lambda: photometric_error(_t(2, 3, 8, 8), _t(1, 3, 8, 8), alpha=0.),
     r'x and y', 'photometric_error(alpha=0) skips all validation: 2×3×8×8 vs 1×3×8×8 silently broadcasts '
     'and returns a 2×1×8×8 map'),
    ('photometric alpha=0 3-D', lambda: photometric_error(_t(3, 8, 8), _t(3, 8, 8), alpha=0.), r'\bx\b',
     'photometric_error(alpha=0) skips all validation: 3-D inputs (3×8×8) return a 3×1×8 "map"'),
    ('log_l1 3-D', lambda: log_l1(_t(1, 8, 8), _t(1, 8, 8)), 'pred',
     'log_l1 has no check_tensor: 3-D pred/target raise IndexError (tuple index out of range) inside '
     'check_same_size'),
    ('log_l1 occ mismatch', lambda: log_l1(_t(1, 1, 8, 8), _t(1, 1, 8, 8), _t(1, 1, 7, 8)), 'occ',
     "log_l1 with a non-broadcastable occ (1×1×7×8 vs 1×1×8×8) raises masked_mean's error naming 'mask', not 'occ'"),
    ('lr_consistency size mismatch', lambda: lr_consistency(_t(1, 1, 8, 8), _t(1, 1, 8, 9)), 'disp_l and disp_r',
     "lr_consistency does not validate: 1×1×8×8 vs 1×1×8×9 gives warp_by_disparity's message "
     "'img and disp must agree on BHW', which names no argument of lr_consistency"),
    ('lr_consistency 2-channel disp_r', lambda: lr_consistency(_t(1, 1, 8, 8), _t(1, 2, 8, 8)), 'disp_r',
     'lr_consistency accepts a 1×2×8×8 disp_r silently (broadcasts |d_l − d_r| to 2 channels) and returns a number'),
    ('min_reprojection ragged list', lambda: min_reprojection([_t(1, 1, 8, 8), _t(1, 1, 8, 9)]), 'errors',
     'min_reprojection with a list of differently sized maps (1×1×8×8, 1×1×8×9) raises a bare RuntimeError '
     'from torch.stack'),
    ('epe valid mismatch', lambda: multiscale_epe(_t(1, 1, 8, 8), _t(1, 1, 8, 8),
                                                  torch.ones(1, 1, 4, 8, dtype=torch.bool)), 'valid',
     'multiscale_epe does not check valid: a 1×1×4×8 valid with 1×1×8×8 gt raises a bare RuntimeError in torch.where'),
    ('bce weights mismatch', lambda: occlusion_bce([_t(1, 1, 8, 8), _t(1, 1, 4, 4)], _t(1, 1, 8, 8), weights=[1.]),
     'weights', 'occlusion_bce does not check len(weights) == len(pred) (multiscale_epe does): weights=[1.] with '
     'two scales silently drops scale 1 (zip truncates) and returns the scale-0 loss only'),
    ('bce batch mismatch', lambda: occlusion_bce(_t(2, 1, 8, 8), _t(1, 1, 8, 8)), 'pred',
     'occlusion_bce does not check batch sizes: pred 2×1×8×8 vs gt 1×1×8×8 raises a plain ValueError from '
     'F.binary_cross_entropy_with_logits ("Target size ... must be the same as input size")'),
]


@pytest.mark.parametrize('fn,match', [b[1:3] for b in BAD_FIXED], ids=[b[0] for b in BAD_FIXED])
def test_bad_input_raises_named_error_fixed_gaps(fn, match):
    with pytest.raises(DepthnbInputError, match=match):
        fn()


# ----------------------------------------------------------------------------------------------------------
# a training step reads nothing back to the host (no host–device sync on CUDA)

# Python-level reads of tensor values (tolist and numpy never reach the dispatcher)
_SYNC_METHODS = {'item', '__bool__', '__float__', '__int__', '__index__', '__complex__', 'tolist', 'numpy'}
# aten ops that read values (_local_scalar_dense: item/bool/float/int), have data-dependent output shapes,
# return a Python bool, or build a tensor from Python data (lift_fresh: a blocking host → device copy on CUDA)
_SYNC_OPS = {'_local_scalar_dense', 'nonzero', 'nonzero_static', 'masked_select', 'equal', 'is_nonzero',
             '_unique2', 'unique_dim', 'unique_consecutive', 'lift_fresh', 'bincount', 'histc', 'allclose'}


class _SyncFunctions(TorchFunctionMode):
    def __init__(self, found):
        super().__init__()
        self.found = found

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, '__name__', '')
        if name in _SYNC_METHODS:
            self.found.append(f'Tensor.{name}')
        return func(*args, **(kwargs or {}))


class _SyncOps(TorchDispatchMode):
    def __init__(self, found):
        super().__init__()
        self.found = found

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name.split('::')[-1]
        bool_index = name in ('index', 'index_put', 'index_put_') and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or []))
        shape_from_values = name == 'repeat_interleave' and kwargs.get('output_size') is None and len(args) == 1
        if name in _SYNC_OPS or bool_index or shape_from_values:
            self.found.append(str(func))
        return func(*args, **kwargs)


@contextlib.contextmanager
def record_host_syncs():
    """Record every operation of the block that would make the host wait for the device on CUDA (works on
    CPU, unlike `torch.cuda.set_sync_debug_mode`); forward and backward passes alike. Yields the list."""
    found = []
    with _SyncFunctions(found), _SyncOps(found):
        yield found


def test_record_host_syncs_sees_every_kind_of_read():
    "The recorder must catch the reads a value check makes, or the tests below prove nothing."
    x = torch.rand(2, 1, 4, 5, requires_grad=True)
    y = x.detach()
    reads = {'item': lambda: y.sum().item(), 'bool': lambda: bool((y > 0).all()),
             'float': lambda: float(y.max()), 'int': lambda: int(y.sum()), 'tolist': lambda: y.tolist(), 'mask index': lambda: x[x > 0.5],
             'nonzero': lambda: torch.nonzero(x), 'tensor from data': lambda: torch.tensor([1., 2.]),
             'as_tensor of a float': lambda: torch.as_tensor(0.3),
             'check=True': lambda: warp_by_disparity(torch.rand(2, 3, 4, 5), y + 1, check=True)}
    for name, read in reads.items():
        with record_host_syncs() as syncs:
            read()
        assert syncs, f'{name} was not recorded'
    with record_host_syncs() as syncs:
        (x * 2).sum().backward()
    assert syncs == []


def _area(t, size):
    return t if t.shape[-2:] == tuple(size) else F.adaptive_avg_pool2d(t, size)


def _dfr_step_loss(net, left, right, gt, valid, occ_gt):
    """The loss of a DFR training step, every variant at once: supervised multi-scale EPE + occlusion BCE,
    photometric (PH) and deep-feature (DFR) reconstruction masked by the predicted occlusion, smoothness, and
    the other terms of the losses chapter on the same outputs."""
    out = net(left, right)
    total = multiscale_epe(out['disp'], gt, valid) + occlusion_bce(out['occ'], occ_gt)
    occ = torch.sigmoid(out['occ'][0]).detach()
    for s, d in enumerate(out['disp']):
        size = d.shape[-2:]
        l, r = _area(left, size), _area(right, size)
        warped, inside = warp_by_disparity(r, d)
        ph = photometric_error(l, warped)
        best, auto = min_reprojection([ph], [photometric_error(l, r)])
        total = total + masked_mean(ph, (1 - _area(occ, size)) * inside) + masked_mean(best, auto)
        total = total + edge_aware_smoothness(d, l) / 2 ** s
    for fl, fr in zip(out['features_l'], out['features_r']):
        d = resize_disparity(out['disp'][0], fl.shape[-2:])
        warped, inside = warp_by_disparity(fr.detach(), d)
        for metric in ('cosine', 'l1', 'l2'):
            err = feature_reconstruction(fl.detach(), warped, metric)
            total = total + masked_mean(err, (1 - _area(occ, fl.shape[-2:])) * inside)
    d0 = out['disp'][0]
    total = total + lr_consistency(d0, d0.flip(-1)) + log_l1(d0, gt, lr_occlusion(d0, gt))
    total = total + total_variation(d0) + photometric_error(left, right, window='gaussian').mean()
    return total + ssim(left, right).mean()


def _dfr_net_and_batch(device):
    "A small DispNet and a batch (left, right, gt disparity, valid, gt occlusion) on `device`; the net warmed up."
    torch.manual_seed(0)
    net = DispNet(width=8).to(device)
    left, right = (rand(2, 3, 64, 96, seed=s, dtype=torch.float32).to(device) for s in (60, 61))
    gt = rand(2, 1, 64, 96, seed=62, lo=1., hi=10., dtype=torch.float32).to(device)
    occ_gt = (rand(2, 1, 64, 96, seed=63, dtype=torch.float32) > 0.8).float().to(device)
    batch = (left, right, gt, gt < 9., occ_gt)
    _dfr_step_loss(net, *batch).backward()                                # warm-up (lazy inits)
    net.zero_grad()
    return net, batch


def test_training_step_makes_no_host_sync(device):
    """Forward and backward of a DFR training step through the warps and losses read no tensor value back:
    on CUDA such a read waits for every queued kernel, several times per step."""
    net, batch = _dfr_net_and_batch(device)
    with record_host_syncs() as syncs:
        loss = _dfr_step_loss(net, *batch)
        loss.backward()
    assert syncs == [], f'host syncs in the training step: {syncs}'
    assert torch.isfinite(loss) and all(p.grad is not None for p in net.parameters())


@pytest.mark.skipif(not CUDA, reason='needs CUDA')
def test_training_step_makes_no_cuda_sync():
    "The same step under CUDA's own sync detector."
    net, batch = _dfr_net_and_batch(torch.device('cuda'))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        _dfr_step_loss(net, *batch).backward()
    finally:
        torch.cuda.set_sync_debug_mode('default')
