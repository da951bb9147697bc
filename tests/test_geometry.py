"""Tests of `depthnb.geometry` against independent references.

Oracles used here never call the function under test: numpy loops (`np.interp`, z-buffers, the
Reciprocal eq. 4 LR check, Sundaram's forward-backward check), kornia (`axis_angle_to_rotation_matrix`,
`depth_to_3d_v2`, `warp_frame_depth`), scipy (`Rotation.from_rotvec`), OpenCV (`cv2.remap`),
`torch.roll`, and closed forms worked out by hand. Gradients are checked with `torch.autograd.gradcheck`
in float64. Every test that takes the `device` fixture runs on CPU, and on CUDA when there is one.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from kornia.geometry.conversions import axis_angle_to_rotation_matrix
from kornia.geometry.depth import depth_to_3d, depth_to_3d_v2, warp_frame_depth
from scipy.spatial.transform import Rotation

from depthnb.core import DepthnbInputError
from depthnb.geometry import (backproject, depth_to_disp, disp_to_depth, fb_occlusion, lr_occlusion, mirror,
                              mirror_stereo, pixel_grid, pose_vec_to_mat, project, resize_disparity, rigid_flow,
                              sample, splat_disparity, warp_by_disparity, warp_by_flow, warp_by_pose)

from conftest import CUDA, gen, np_, rand  # noqa: F401  (the device fixture comes from conftest)


def intrinsics(fx=7., fy=5.5, cx=3.3, cy=2.2, b=1, dtype=torch.float64):
    K = torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=dtype)
    return K.expand(b, 3, 3).clone()


def tol(dtype):
    return dict(rtol=0, atol=1e-12 if dtype == torch.float64 else 2e-6)


# ----------------------------------------------------------------------------------------------------------
# pixel grid and the integer-shift pin (pixel centres at integers, align_corners handled right)

def test_pixel_grid_matches_numpy_meshgrid(device):
    g = pixel_grid(5, 7, device=device)
    xs, ys = np.meshgrid(np.arange(7), np.arange(5))
    assert g.shape == (1, 2, 5, 7) and g.device.type == device.type
    np.testing.assert_array_equal(np_(g[0, 0]), xs)
    np.testing.assert_array_equal(np_(g[0, 1]), ys)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('mode', ['bilinear', 'nearest'])
@pytest.mark.parametrize('h,w', [(5, 11), (3, 7), (1, 9)])
@pytest.mark.parametrize('k', [1, 2, 3])
def test_integer_disparity_is_roll(device, dtype, mode, h, w, k):
    img = rand(2, 3, h, w, seed=k, dtype=dtype).to(device)
    disp = torch.full((2, 1, h, w), float(k), dtype=dtype, device=device)
    x = torch.arange(w, device=device)
    # reference='left': the left pixel x reads the right image at x − k
    out, valid = warp_by_disparity(img, disp, mode=mode)
    assert out.dtype == dtype and valid.dtype == torch.bool and valid.shape == (2, 1, h, w)
    assert torch.equal(valid, (x >= k).expand(2, 1, h, w))
    ref = torch.roll(img, shifts=k, dims=-1)
    t = tol(dtype) if mode == 'bilinear' else dict(rtol=0, atol=0)
    torch.testing.assert_close(out[..., k:], ref[..., k:], **t)
    # outside positions take the border value (documented)
    torch.testing.assert_close(out[..., :k], img[..., :1].expand(-1, -1, -1, k), **t)
    # reference='right': the right pixel x reads the left image at x + k
    out, valid = warp_by_disparity(img, disp, mode=mode, reference='right')
    assert torch.equal(valid, (x <= w - 1 - k).expand(2, 1, h, w))
    torch.testing.assert_close(out[..., :w - k], torch.roll(img, shifts=-k, dims=-1)[..., :w - k], **t)


def test_integer_labels_keep_dtype_under_nearest_warp(device):
    lab = torch.randint(0, 19, (1, 1, 5, 9), generator=gen(3)).to(device)
    out, valid = warp_by_disparity(lab, torch.full((1, 1, 5, 9), 2., device=device), mode='nearest')
    assert out.dtype == torch.int64
    assert torch.equal(out[..., 2:], torch.roll(lab, 2, -1)[..., 2:])
    assert valid[..., :2].sum() == 0 and valid[..., 2:].all()


def _interp_oracle(img, disp, sign=-1.):
    "Row-wise linear interpolation of img (B×C×H×W numpy) at x + sign·disp; valid inside [0, W−1]."
    b, c, h, w = img.shape
    out = np.zeros_like(img, dtype=np.float64)
    xs = np.arange(w, dtype=np.float64)
    u = xs + sign * disp[:, 0].astype(np.float64)  # B×H×W
    for i in range(b):
        for y in range(h):
            for ch in range(c):
                out[i, ch, y] = np.interp(u[i, y], xs, img[i, ch, y].astype(np.float64))
    return out, (u >= 0) & (u <= w - 1)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('reference', ['left', 'right'])
def test_subpixel_disparity_matches_np_interp(device, dtype, reference):
    b, c, h, w = 2, 3, 5, 13
    img = rand(b, c, h, w, seed=1, dtype=dtype)
    for disp in (torch.full((b, 1, h, w), 2.3, dtype=dtype), rand(b, 1, h, w, seed=2, dtype=dtype, lo=0.2, hi=4.7)):
        out, valid = warp_by_disparity(img.to(device), disp.to(device), reference=reference)
        ref, ref_valid = _interp_oracle(np_(img), np_(disp), -1. if reference == 'left' else 1.)
        np.testing.assert_array_equal(np_(valid[:, 0]), ref_valid)
        m = np.broadcast_to(ref_valid[:, None], ref.shape)
        np.testing.assert_allclose(np_(out)[m], ref[m], rtol=0, atol=1e-12 if dtype == torch.float64 else 3e-6)


def test_subpixel_nearest_matches_rounding(device):
    h, w = 4, 10
    img = rand(1, 2, h, w, seed=4)
    base = torch.randint(0, 4, (1, 1, h, w), generator=gen(5)).double()
    frac = rand(1, 1, h, w, seed=6, lo=0.1, hi=0.9)
    frac = torch.where((frac - 0.5).abs() < 0.1, frac + 0.25, frac)  # stay away from the .5 tie
    disp = base + frac
    out, valid = warp_by_disparity(img.to(device), disp.to(device), mode='nearest')
    u = np.arange(w) - np_(disp)[0, 0]
    r = np.round(u).astype(int)
    ok = (r >= 0) & (r <= w - 1)
    np.testing.assert_array_equal(np_(valid[0, 0]), ok)
    ref = np.take_along_axis(np_(img)[0], np.clip(r, 0, w - 1)[None].repeat(2, 0), axis=2)
    np.testing.assert_array_equal(np_(out[0])[:, ok], ref[:, ok])


# ----------------------------------------------------------------------------------------------------------
# gradients (float64 gradcheck; positions kept away from pixel boundaries where bilinear has kinks)

def _frac_away(shape, seed, lo=0.2, hi=0.8, ints=(0, 3)):
    "Integer part + fraction in [lo, hi]: never within 0.2 px of an integer (or of an image border)."
    return (torch.randint(*ints, shape, generator=gen(seed)).double() + rand(*shape, seed=seed + 100, lo=lo, hi=hi))


@pytest.mark.parametrize('reference', ['left', 'right'])
def test_gradcheck_warp_by_disparity(device, reference):
    img = rand(1, 2, 4, 7, seed=7).to(device).requires_grad_()
    disp = _frac_away((1, 1, 4, 7), seed=8).to(device).requires_grad_()
    f = lambda i, d: warp_by_disparity(i, d, reference=reference)[0]
    assert torch.autograd.gradcheck(f, (img, disp), eps=1e-6, atol=1e-7, nondet_tol=1e-10 if CUDA else 0.)


def test_gradcheck_warp_by_flow(device):
    img = rand(2, 2, 5, 6, seed=9).to(device).requires_grad_()
    flow = (_frac_away((2, 2, 5, 6), seed=10, ints=(-2, 2))).to(device).requires_grad_()
    f = lambda i, fl: warp_by_flow(i, fl)[0]
    assert torch.autograd.gradcheck(f, (img, flow), eps=1e-6, atol=1e-7, nondet_tol=1e-10 if CUDA else 0.)


def _small_pose(b=1, seed=11, dtype=torch.float64):
    vec = torch.cat((rand(b, 3, seed=seed, lo=-0.05, hi=0.05), rand(b, 3, seed=seed + 1, lo=-0.3, hi=0.3)), 1)
    return vec.to(dtype)


def test_gradcheck_warp_by_pose(device):
    K = intrinsics().to(device)
    img = rand(1, 2, 5, 6, seed=12).to(device).requires_grad_()
    depth = rand(1, 1, 5, 6, seed=13, lo=2., hi=4.).to(device).requires_grad_()
    vec = _small_pose().to(device).requires_grad_()
    with torch.no_grad():  # the chosen inputs put no sampling position near a pixel boundary (bilinear kink)
        coords = warp_by_pose(img, depth, pose_vec_to_mat(vec), K)[2]
        assert (coords - coords.round()).abs().min() > 1e-3
    f = lambda i, d, v: tuple(warp_by_pose(i, d, pose_vec_to_mat(v), K)[j] for j in (0, 2))
    assert torch.autograd.gradcheck(f, (img, depth, vec), eps=1e-6, atol=1e-6, nondet_tol=1e-10 if CUDA else 0.)


@pytest.mark.parametrize('scale', [1.0, 1e-3, 1e-5, 1.0001e-4, 0.])
def test_gradcheck_pose_vec_to_mat(device, scale):
    vec = torch.cat((rand(3, 3, seed=14, lo=-1, hi=1) * scale, rand(3, 3, seed=15, lo=-1, hi=1)), 1)
    vec = vec.to(device).requires_grad_()
    assert torch.autograd.gradcheck(pose_vec_to_mat, (vec,), eps=1e-7, atol=1e-7)


def test_pose_vec_to_mat_derivative_at_zero_is_hat_map():
    "∂R/∂r_k at r = 0 is the generator [e_k]×; and R stays finite with finite gradients at exactly 0."
    vec = torch.zeros(1, 6, dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda v: pose_vec_to_mat(v)[0, :3, :3], vec)[:, :, 0, :3]  # 3×3×3
    hat = np.zeros((3, 3, 3))
    for k in range(3):
        e = np.eye(3)[k]
        hat[..., k] = np.array([[0, -e[2], e[1]], [e[2], 0, -e[0]], [-e[1], e[0], 0]])
    np.testing.assert_allclose(np_(jac), hat, atol=1e-12)


# ----------------------------------------------------------------------------------------------------------
# rotations against kornia and scipy, composition

@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('scale', [2.5, 1e-2, 1e-4, 1e-6, 1e-9, 0.])
def test_rotation_matches_kornia_and_scipy(device, dtype, scale):
    r = rand(16, 3, seed=16, lo=-1, hi=1) * scale
    t = rand(16, 3, seed=17, lo=-2, hi=2)
    T = pose_vec_to_mat(torch.cat((r, t), 1).to(dtype).to(device))
    assert T.shape == (16, 4, 4) and T.dtype == dtype
    atol = 1e-12 if dtype == torch.float64 else 1e-6
    R_kornia = axis_angle_to_rotation_matrix(r.to(device))  # float64 oracle
    torch.testing.assert_close(T[:, :3, :3].double(), R_kornia, rtol=0, atol=atol)
    R_scipy = Rotation.from_rotvec(np_(r)).as_matrix()
    np.testing.assert_allclose(np_(T[:, :3, :3]).astype(np.float64), R_scipy, rtol=0, atol=atol)
    np.testing.assert_allclose(np_(T[:, :3, 3]), np_(t.to(dtype)), rtol=0, atol=0)
    np.testing.assert_array_equal(np_(T[:, 3]), np.tile([0., 0., 0., 1.], (16, 1)))


def test_pose_vec_zero_is_identity(device):
    for dtype in (torch.float32, torch.float64):
        T = pose_vec_to_mat(torch.zeros(3, 6, dtype=dtype, device=device))
        assert torch.equal(T, torch.eye(4, dtype=dtype, device=device).expand(3, 4, 4))


@pytest.mark.parametrize('theta', [0.3, -1.2, 2.0, 1e-5])
def test_pose_composition_about_z(device, theta):
    rz = lambda a: torch.tensor([[0., 0., a, 0., 0., 0.]], dtype=torch.float64, device=device)
    T1, T2 = pose_vec_to_mat(rz(theta)), pose_vec_to_mat(rz(2 * theta))
    torch.testing.assert_close(T1 @ T1, T2, rtol=0, atol=1e-12)
    c, s = math.cos(2 * theta), math.sin(2 * theta)
    hand = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(np_(T2[0]), hand, rtol=0, atol=1e-12)


def test_pose_composition_general(device):
    "Same axis: R(θ1 u) R(θ2 u) = R((θ1+θ2) u); translations compose as R1 t2 + t1; R is orthonormal, det 1."
    u = torch.nn.functional.normalize(rand(5, 3, seed=18, lo=-1, hi=1), dim=1)
    th1, th2 = rand(5, 1, seed=19, lo=-2, hi=2), rand(5, 1, seed=20, lo=-2, hi=2)
    t1, t2 = rand(5, 3, seed=21, lo=-1, hi=1), rand(5, 3, seed=22, lo=-1, hi=1)
    T1 = pose_vec_to_mat(torch.cat((u * th1, t1), 1).to(device))
    T2 = pose_vec_to_mat(torch.cat((u * th2, t2), 1).to(device))
    T12 = T1 @ T2
    R12 = Rotation.from_rotvec(np_(u * (th1 + th2))).as_matrix()
    np.testing.assert_allclose(np_(T12[:, :3, :3]), R12, atol=1e-12)
    R1 = Rotation.from_rotvec(np_(u * th1)).as_matrix()
    np.testing.assert_allclose(np_(T12[:, :3, 3]), np.einsum('bij,bj->bi', R1, np_(t2)) + np_(t1), atol=1e-12)
    R = np_(T1[:, :3, :3])
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1., atol=1e-12)


# ----------------------------------------------------------------------------------------------------------
# projection

@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_backproject_matches_kornia(device, dtype):
    K = torch.stack((intrinsics()[0], intrinsics(9., 8., 4.1, 1.7)[0])).to(dtype).to(device)
    depth = rand(2, 1, 5, 7, seed=23, lo=0.5, hi=20.).to(dtype).to(device)
    pts = backproject(depth, torch.linalg.inv(K))
    assert pts.shape == (2, 3, 5, 7)
    kv2 = depth_to_3d_v2(depth[:, 0], K)  # B×H×W×3
    kv1 = depth_to_3d(depth, K)  # B×3×H×W
    t = dict(rtol=1e-12 if dtype == torch.float64 else 2e-6, atol=1e-12 if dtype == torch.float64 else 1e-5)
    torch.testing.assert_close(pts.permute(0, 2, 3, 1), kv2, **t)
    torch.testing.assert_close(pts, kv1, **t)


def test_project_backproject_roundtrip(device):
    K = torch.stack((intrinsics()[0], intrinsics(9., 8., 4.1, 1.7)[0])).to(device)
    depth = rand(2, 1, 6, 9, seed=24, lo=0.5, hi=50.).to(device)
    pix, z = project(backproject(depth, torch.linalg.inv(K)), K)
    xs, ys = np.meshgrid(np.arange(9.), np.arange(6.))
    np.testing.assert_allclose(np_(pix[:, 0]), np.broadcast_to(xs, (2, 6, 9)), atol=1e-10)
    np.testing.assert_allclose(np_(pix[:, 1]), np.broadcast_to(ys, (2, 6, 9)), atol=1e-10)
    np.testing.assert_allclose(np_(z), np_(depth), rtol=1e-13)
    # a 3×3 K (no batch dim) broadcasts over the batch
    pix2, _ = project(backproject(depth[:1], torch.linalg.inv(K[0])), K[0])
    torch.testing.assert_close(pix2, pix[:1])


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_warp_by_pose_matches_kornia_warp_frame_depth(device, dtype):
    b, h, w = 2, 9, 13
    K = intrinsics(10., 9., 6.2, 4.1, b=b).to(dtype).to(device)
    img = rand(b, 3, h, w, seed=25).to(dtype).to(device)
    depth = rand(b, 1, h, w, seed=26, lo=2., hi=6.).to(dtype).to(device)
    T = pose_vec_to_mat(_small_pose(b, seed=27)).to(dtype).to(device)
    out, valid, coords = warp_by_pose(img, depth, T, K)
    ref = warp_frame_depth(img, depth, T, K)
    x, y = coords[:, :1], coords[:, 1:]
    interior = valid & (x >= 1) & (x <= w - 2) & (y >= 1) & (y <= h - 2)
    assert interior.float().mean() > 0.5 and (~valid).any()  # the pose moves some pixels out
    m = interior.expand_as(out)
    torch.testing.assert_close(out[m], ref[m], rtol=0, atol=1e-10 if dtype == torch.float64 else 2e-5)


def test_warp_by_pose_identity_and_behind_camera(device):
    K = intrinsics().to(device)
    img = rand(1, 3, 5, 7, seed=28).to(device)
    depth = rand(1, 1, 5, 7, seed=29, lo=1., hi=3.).to(device)
    out, valid, coords = warp_by_pose(img, depth, torch.eye(4, dtype=torch.float64, device=device)[None], K)
    torch.testing.assert_close(out, img, rtol=0, atol=1e-12)
    torch.testing.assert_close(coords, pixel_grid(5, 7, device, torch.float64).expand(1, 2, 5, 7), rtol=0, atol=1e-12)
    assert valid[..., 1:-1, 1:-1].all()  # the border: see test_warp_by_pose_identity_keeps_border_valid
    # the camera moves 10 m forward: every point (depth ≤ 3 m) ends up behind it
    T = torch.eye(4, dtype=torch.float64, device=device)[None].clone(); T[0, 2, 3] = -10.
    assert not warp_by_pose(img, depth, T, K)[1].any()


def test_warp_by_pose_identity_keeps_border_valid():  # CPU only: the round-off pattern is device-specific
    K = intrinsics(dtype=torch.float32)
    img = rand(1, 3, 8, 12, seed=28, dtype=torch.float32)
    depth = rand(1, 1, 8, 12, seed=29, lo=1., hi=3., dtype=torch.float32)
    _, valid, coords = warp_by_pose(img, depth, torch.eye(4)[None], K)
    assert valid.all(), f'{int((~valid).sum())} of {valid.numel()} pixels invalid under the identity pose'


def test_rigid_flow_pure_x_translation_is_minus_disparity(device):
    fx, baseline = 7., 0.54
    K = intrinsics(fx=fx).expand(2, 3, 3).to(device)
    depth = rand(2, 1, 5, 8, seed=30, lo=1., hi=30.).to(device)
    T = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1); T[:, 0, 3] = -baseline  # left camera → right camera
    flow = rigid_flow(depth, T.to(device), K)
    np.testing.assert_allclose(np_(flow[:, 0]), -fx * baseline / np_(depth[:, 0]), rtol=1e-12)
    np.testing.assert_allclose(np_(flow[:, 1]), 0., atol=1e-12)
    torch.testing.assert_close(flow[:, :1], -depth_to_disp(depth, fx, baseline))
    # and the pose warp equals the stereo warp by that disparity
    img = rand(2, 3, 5, 8, seed=31).to(device)
    wp, vp, _ = warp_by_pose(img, depth, T.to(device), K)
    wd, vd = warp_by_disparity(img, fx * baseline / depth)
    assert torch.equal(vp[..., 1:-1, :], vd[..., 1:-1, :])  # border rows: see test_warp_by_pose_identity_keeps_border_valid
    torch.testing.assert_close(wp, wd, rtol=0, atol=1e-12)


def test_disp_depth_conversions(device):
    disp = rand(2, 1, 3, 4, seed=32, lo=1., hi=60.).to(device)
    f, bl = torch.tensor([994.978, 500.], dtype=torch.float64), torch.tensor([0.193001, 0.54], dtype=torch.float64)
    depth = disp_to_depth(disp, f, bl)
    ref = (np_(f) * np_(bl))[:, None, None, None] / np_(disp)
    np.testing.assert_allclose(np_(depth), ref, rtol=1e-12)
    torch.testing.assert_close(depth_to_disp(depth, f, bl), disp)
    z = disp_to_depth(torch.zeros(1, 1, 1, 2, device=device), 10., 0.1)
    assert torch.isinf(z).all() and (depth_to_disp(z, 10., 0.1) == 0).all()


def test_resize_disparity_rescales_values(device):
    d = torch.full((1, 1, 4, 8), 3., device=device)
    assert torch.allclose(resize_disparity(d, (8, 16)), torch.full((1, 1, 8, 16), 6., device=device))
    assert torch.allclose(resize_disparity(d, (2, 4), mode='nearest'), torch.full((1, 1, 2, 4), 1.5, device=device))


# ----------------------------------------------------------------------------------------------------------
# flow warping vs OpenCV

def _remap(img, flow):
    "cv2.remap (INTER_LINEAR) of img (C×H×W numpy) at x + flow (2×H×W)."
    c, h, w = img.shape
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = (xs + flow[0]).astype(np.float32), (ys + flow[1]).astype(np.float32)
    out = cv2.remap(np.ascontiguousarray(img.transpose(1, 2, 0)), mx, my, cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape(h, w, c).transpose(2, 0, 1), mx, my


@pytest.mark.parametrize('quantised', [True, False])
def test_warp_by_flow_matches_cv2_remap(device, quantised):
    c, h, w = 3, 11, 15
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
    img = np.stack([0.5 + 0.5 * np.sin(0.4 * xx + 0.3 * yy + k) for k in range(c)]).astype(np.float32)
    if quantised:  # OpenCV may quantise map positions to 1/32 px; on that lattice the two agree exactly
        flow = (torch.randint(-96, 96, (2, h, w), generator=gen(33)).float() / 32).numpy()
    else:
        flow = (rand(2, h, w, seed=34, lo=-3, hi=3)).float().numpy()
    ref, mx, my = _remap(img, flow)
    out, valid = warp_by_flow(torch.from_numpy(img)[None].to(device), torch.from_numpy(flow)[None].to(device))
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    np.testing.assert_array_equal(np_(valid[0, 0]), inside)
    interior = inside & (mx >= 1) & (mx <= w - 2) & (my >= 1) & (my <= h - 2)
    assert interior.mean() > 0.4
    grad = max(np.abs(np.diff(img, axis=1)).max(), np.abs(np.diff(img, axis=2)).max())
    atol = 2e-6 if quantised else 2e-6 + grad / 32  # 1/64 px position error in each axis, at most
    np.testing.assert_allclose(np_(out[0])[:, interior], ref[:, interior], rtol=0, atol=atol)


def test_sample_coords_batch_and_dtype(device):
    img = rand(1, 1, 3, 4, seed=35, dtype=torch.float32).to(device)
    coords = torch.tensor([[[[0., 3., 1.5, -0.1]], [[0., 2., 1., 0.]]]], device=device)  # 1×2×1×4
    out, valid = sample(img, coords)
    i = np_(img)[0, 0]
    np.testing.assert_allclose(np_(out)[0, 0, 0, :3], [i[0, 0], i[2, 3], 0.5 * (i[1, 1] + i[1, 2])], atol=1e-6)
    assert valid[0, 0, 0].tolist() == [True, True, True, False]


# ----------------------------------------------------------------------------------------------------------
# occlusion checks

def _lr_oracle(dl, dr, alpha):
    """Reciprocal eq. 4 in positive-disparity form, one pixel at a time (numpy, float64).
    Returns (occ H×W bool, margin: distance of every in-image pixel from its decision threshold)."""
    h, w = dl.shape
    occ = np.zeros((h, w), bool)
    margin = np.full((h, w), np.inf)
    xs = np.arange(w, dtype=np.float64)
    for y in range(h):
        for x in range(w):
            d = float(dl[y, x])
            u = x - d
            if u < 0 or u > w - 1:
                occ[y, x] = True
                margin[y, x] = min(abs(u), abs(u - (w - 1)))
                continue
            drt = float(np.interp(u, xs, dr[y].astype(np.float64)))
            lhs, rhs = abs(d - drt), alpha * (abs(d) + abs(drt)) + 0.5
            occ[y, x] = lhs >= rhs
            margin[y, x] = abs(lhs - rhs)
    return occ, margin


def _slanted_scene(h=3, w=48, a=0.05, bslope=0.1, c=3., fg=10., x0=24, x1=32, dtype=torch.float32):
    """Left/right disparity of a slanted background plane d_l = a·x + b·y + c behind a fronto-parallel box
    (disparity fg) over left columns [x0, x1). For the plane, x_r = x − d_l(x) gives
    d_r(x_r) = (a·x_r + b·y + c) / (1 − a); the box covers right columns [x0 − fg, x1 − fg)."""
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing='ij')
    dl = a * xs + bslope * ys + c
    dl[:, x0:x1] = fg
    dr = (a * xs + bslope * ys + c) / (1 - a)
    dr[:, x0 - int(fg):x1 - int(fg)] = fg
    to = lambda z: torch.from_numpy(z)[None, None].to(dtype)
    return to(dl), to(dr)


@pytest.mark.parametrize('alpha', [0.01, 0.1])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_lr_occlusion_slanted_scene(device, alpha, dtype):
    dl, dr = _slanted_scene(dtype=dtype)
    occ = lr_occlusion(dl.to(device), dr.to(device), alpha=alpha)
    assert occ.dtype == dtype and occ.shape == dl.shape
    ref, margin = _lr_oracle(np_(dl)[0, 0], np_(dr)[0, 0], alpha)
    assert margin.min() > 1e-4  # no pixel sits on the decision threshold
    np.testing.assert_array_equal(np_(occ)[0, 0], ref.astype(np.float64))
    # by hand: x − d_l < 0 for x ≤ 3 (d_l ≥ 3); background x = 18..23 lands on the box in the right view
    # (x_r = 0.95x − 3 − 0.1y ∈ [14, 21)); the box itself and the background right of it are consistent
    o = np_(occ)[0, 0]
    assert (o[:, :4] == 1).all() and (o[:, 18:24] == 1).all()
    assert (o[:, 4:16] == 0).all() and (o[:, 24:] == 0).all()


def test_lr_occlusion_right_view_via_mirror(device):
    "The documented recipe for the right view's map, against eq. 4 written for the right view directly."
    dl, dr = _slanted_scene(dtype=torch.float64)
    dlm, drm = mirror_stereo(dl.to(device), dr.to(device))
    occ_r = mirror(lr_occlusion(dlm, drm))
    d_r, d_l = np_(dr)[0, 0], np_(dl)[0, 0]
    h, w = d_r.shape
    ref = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            u = x + d_r[y, x]  # the right pixel x sees the left pixel x + d_r
            if u > w - 1: ref[y, x] = 1; continue
            dlt = np.interp(u, np.arange(w), d_l[y])
            ref[y, x] = abs(d_r[y, x] - dlt) >= 0.01 * (abs(d_r[y, x]) + abs(dlt)) + 0.5
    np.testing.assert_array_equal(np_(occ_r)[0, 0], ref)
    assert ref[:, 22:26].all() and not ref[:, 14:22].any()  # right-only background next to the box


def test_lr_occlusion_consistent_constant_scene(device):
    d = torch.full((2, 1, 3, 10), 2.5, device=device)
    occ = lr_occlusion(d, d)
    assert torch.equal(occ[..., :3], torch.ones_like(occ[..., :3])) and not occ[..., 3:].any()


def test_fb_occlusion_moving_box(device):
    "Box (rows 3–6, columns 10–15) moves +4 px in x between t and s over a static background."
    h, w = 10, 30
    fw = torch.zeros(1, 2, h, w); bw = torch.zeros(1, 2, h, w)
    fw[0, 0, 3:7, 10:16] = 4.   # t → s: the box pixels move right
    bw[0, 0, 3:7, 14:20] = -4.  # s → t: the box (now at columns 14–19) moves back
    expected = torch.zeros(1, 1, h, w)
    expected[0, 0, 3:7, 16:20] = 1  # background of t covered by the box in s
    for dtype in (torch.float32, torch.float64):
        occ = fb_occlusion(fw.to(dtype).to(device), bw.to(dtype).to(device))
        assert occ.dtype == dtype
        assert torch.equal(occ.cpu(), expected.to(dtype))
    # a global, consistent translation by (+2.5, −1.25): only pixels leaving the image are occluded
    fw = torch.tensor([2.5, -1.25]).reshape(1, 2, 1, 1).expand(1, 2, h, w).contiguous()
    occ = fb_occlusion(fw.to(device), (-fw).to(device))
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    out = (xs + 2.5 > w - 1) | (ys - 1.25 < 0)
    np.testing.assert_array_equal(np_(occ)[0, 0], out.astype(np.float32))


# ----------------------------------------------------------------------------------------------------------
# splatting

def _splat_oracle(dl, valid=None):
    "Numpy z-buffer: each usable left pixel writes d to the right pixels floor(x − d) and ceil(x − d); max wins."
    b, _, h, w = dl.shape
    out = np.zeros((b, 1, h, w), dl.dtype)
    for i in range(b):
        for y in range(h):
            for x in range(w):
                d = dl[i, 0, y, x]
                if not (np.isfinite(d) and d > 0) or (valid is not None and not valid[i, 0, y, x]): continue
                u = x - d
                for t in {math.floor(u), math.ceil(u)}:
                    if 0 <= t <= w - 1 and d > out[i, 0, y, t]: out[i, 0, y, t] = d
    return out


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_splat_matches_numpy_zbuffer(device, dtype):
    dl = rand(2, 1, 6, 17, seed=36, lo=0.3, hi=6.).to(dtype)
    dl[0, 0, 0, 3] = float('nan'); dl[0, 0, 1, 4] = float('inf'); dl[1, 0, 2, 5] = 0.; dl[1, 0, 3, 6] = -2.
    dl[1, 0, 4, 8:12] = torch.tensor([2., 3., 4., 5.], dtype=dtype)  # integer disparities: a single target
    valid = rand(2, 1, 6, 17, seed=37) > 0.2
    for v in (None, valid):
        out = splat_disparity(dl.to(device), None if v is None else v.to(device))
        assert out.dtype == dtype and out.shape == dl.shape
        np.testing.assert_array_equal(np_(out), _splat_oracle(np_(dl), None if v is None else np_(v)))


def test_splat_slanted_scene_matches_analytic_right_disparity(device):
    dl, dr = _slanted_scene(dtype=torch.float64)
    s = np_(splat_disparity(dl.to(device)))[0, 0]
    r = np_(dr)[0, 0]
    assert (s[:, 14:22] == 10.).all()             # the box wins the z-test over the background behind it
    assert (s[:, 22:26] == 0.).all()               # background seen by the right camera only
    assert (s[:, 43:] == 0.).all()                 # beyond the left image's field of view (x = 47 → 41.65 + …)
    bg = np.r_[0:13, 29:41]                       # background both views see: within one pixel's slope
    np.testing.assert_allclose(s[:, bg], r[:, bg], atol=0.06)


# ----------------------------------------------------------------------------------------------------------
# points at infinity (depth +inf, the renderer's sky): moved by the rotation only

def _reproject_oracle(K, T, depth):
    """numpy: pixel positions of every pixel after T. Finite depth d: K (R d K⁻¹u + t); +inf: K R K⁻¹u."""
    b, _, h, w = depth.shape
    ys, xs = np.mgrid[0:h, 0:w]
    u = np.stack((xs, ys, np.ones_like(xs)), 0).reshape(3, -1).astype(np.float64)
    out = np.empty((b, 2, h, w))
    for i in range(b):
        Kn, R, t = np_(K[i]), np_(T[i, :3, :3]), np_(T[i, :3, 3])
        rays = np.linalg.inv(Kn) @ u
        d = np_(depth[i, 0]).reshape(-1)
        inf = np.isposinf(d)
        p = R @ (rays * np.where(inf, 1., d)) + t[:, None] * (~inf)
        q = Kn @ p
        out[i] = (q[:2] / q[2:]).reshape(2, h, w)
    return out


def _rotation(rotvec, dtype=torch.float64):
    T = torch.eye(4, dtype=dtype)[None].clone()
    T[0, :3, :3] = torch.from_numpy(Rotation.from_rotvec(rotvec).as_matrix()).to(dtype)
    return T


def _with_sky(depth, seed):
    sky = rand(*depth.shape, seed=seed) < 0.3
    sky[..., :2, :] = True                                  # whole rows of sky, and scattered sky pixels
    return depth.masked_fill(sky, float('inf')), sky


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_pure_rotation_is_the_infinite_homography_whatever_the_depth(device, dtype):
    """Under a pure rotation every pixel moves by K R K⁻¹ — finite depth and +inf alike."""
    h, w = 9, 13
    K = intrinsics(10., 9., 6.2, 4.1).to(dtype).to(device)
    T = _rotation([0.03, -0.04, 0.02], dtype).to(device)
    depth, sky = _with_sky(rand(1, 1, h, w, seed=40, lo=0.5, hi=50.), seed=41)
    depth = depth.to(dtype).to(device)
    Kn, R = np_(K[0]), np_(T[0, :3, :3])
    ys, xs = np.mgrid[0:h, 0:w]
    v = (Kn @ R @ np.linalg.inv(Kn)) @ np.stack((xs, ys, np.ones_like(xs)), 0).reshape(3, -1)
    homography = (v[:2] / v[2:]).reshape(2, h, w)           # the closed form, no depth in it
    atol = 1e-10 if dtype == torch.float64 else 1e-4
    img = rand(1, 3, h, w, seed=42).to(dtype).to(device)
    for d in (depth, torch.full_like(depth, float('inf')), depth.nan_to_num(posinf=3.)):
        out, valid, coords = warp_by_pose(img, d, T, K)
        np.testing.assert_allclose(np_(coords[0]), homography, rtol=0, atol=atol)
        flow = rigid_flow(d, T, K)[0]
        np.testing.assert_allclose(np_(flow), homography - np.stack((xs, ys)), rtol=0, atol=atol)
        inside = (homography[0] >= -1e-3) & (homography[0] <= w - 1 + 1e-3)
        inside &= (homography[1] >= -1e-3) & (homography[1] <= h - 1 + 1e-3)
        np.testing.assert_array_equal(np_(valid[0, 0]).astype(bool), inside)
        assert torch.isfinite(out).all() and inside.mean() > 0.5 and not inside.all()


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_translation_moves_finite_depth_by_projection_and_sky_by_rotation_only(device, dtype):
    b, h, w = 2, 9, 13
    K = intrinsics(10., 9., 6.2, 4.1, b=b).to(dtype).to(device)
    depth, sky = _with_sky(rand(b, 1, h, w, seed=43, lo=2., hi=20.), seed=44)
    depth = depth.to(dtype).to(device).requires_grad_()
    vec = _small_pose(b, seed=45).to(dtype).to(device).requires_grad_()
    T = pose_vec_to_mat(vec)
    img = rand(b, 3, h, w, seed=46).to(dtype).to(device).requires_grad_()
    out, valid, coords = warp_by_pose(img, depth, T, K)
    flow = rigid_flow(depth, T, K)
    ref = _reproject_oracle(K, T.detach(), depth.detach())
    rtol, atol = (1e-10, 1e-10) if dtype == torch.float64 else (1e-5, 1e-4)
    np.testing.assert_allclose(np_(coords), ref, rtol=rtol, atol=atol)
    np.testing.assert_allclose(np_(flow), ref - np_(pixel_grid(h, w)), rtol=rtol, atol=atol)
    # the sky's positions do not depend on the translation: those of the rotation alone
    T_rot = T.detach().clone()
    T_rot[:, :3, 3] = 0
    _, _, coords_rot = warp_by_pose(img.detach(), depth.detach(), T_rot, K)
    m = sky.to(device).expand(b, 2, h, w)
    atol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(coords.detach()[m], coords_rot[m], rtol=0, atol=atol)
    assert not torch.equal(coords.detach()[~m], coords_rot[~m])   # finite depths do move with t
    # no NaN anywhere: values, and gradients through depth, pose and image (0 for the sky's depth)
    for t in (out, coords, flow):
        assert torch.isfinite(t).all()
    (out.sum() + coords.sum() + flow.sum()).backward()
    for g in (depth.grad, vec.grad, img.grad):
        assert torch.isfinite(g).all()
    assert (depth.grad[sky.to(device)] == 0).all() and (depth.grad[~sky.to(device)] != 0).any()


def test_sky_behind_the_camera_is_invalid_not_nan(device):
    "Turning the camera around (π about y) puts the sky's directions behind it: invalid, finite positions."
    h, w = 6, 8
    K = intrinsics().to(device)
    depth = torch.full((1, 1, h, w), float('inf'), dtype=torch.float64, device=device)
    out, valid, coords = warp_by_pose(rand(1, 3, h, w, seed=47).to(device), depth,
                                      _rotation([0., math.pi, 0.]).to(device), K)
    assert not valid.any() and torch.isfinite(out).all() and torch.isfinite(coords).all()


def test_warp_by_pose_with_sky_matches_huge_finite_depth(device):
    "+inf behaves as the limit of ever larger depths (the workaround the renderer's tests used: 1e5 m)."
    b, h, w = 1, 9, 13
    K = intrinsics(10., 9., 6.2, 4.1).to(device)
    T = pose_vec_to_mat(_small_pose(b, seed=48)).to(device)
    depth, sky = _with_sky(rand(b, 1, h, w, seed=49, lo=2., hi=20.), seed=50)
    depth = depth.to(device)
    img = rand(b, 3, h, w, seed=51).to(device)
    far = depth.nan_to_num(posinf=1e9)
    for a, c in zip(warp_by_pose(img, depth, T, K), warp_by_pose(img, far, T, K)):
        torch.testing.assert_close(a, c, rtol=0, atol=1e-7) if a.is_floating_point() else torch.equal(a, c)


# ----------------------------------------------------------------------------------------------------------
# without `check`, bad values are invalid pixels with zero gradient — never a crash
# (grid_sample's backward pass reads out of bounds at NaN positions; `sample` moves them outside first)

@pytest.mark.parametrize('mode', ['bilinear', 'nearest'])
@pytest.mark.parametrize('bad', [float('nan'), float('inf'), -float('inf')])
def test_warps_survive_nan_and_inf_positions(device, mode, bad):
    b, h, w = 2, 6, 11
    img = rand(b, 3, h, w, seed=52).to(device).requires_grad_()
    hole = torch.zeros(b, 1, h, w, dtype=torch.bool)
    hole[0, 0, 2, 3:9] = True
    hole[1, 0, 4, 0:5] = True
    hole = hole.to(device)
    full = lambda c, v: torch.full((b, c, h, w), v, dtype=torch.float64, device=device)
    disp = full(1, 2.).masked_fill(hole, bad).requires_grad_()
    flow = full(2, 0.).masked_fill(hole.expand(b, 2, h, w), bad).requires_grad_()
    coords = (pixel_grid(h, w, device, torch.float64) + flow.detach()).requires_grad_()
    depth = full(1, 3.).masked_fill(hole, bad).requires_grad_()
    K = intrinsics().to(device)
    identity = torch.eye(4, dtype=torch.float64, device=device)[None]
    calls = {'warp_by_disparity': lambda: warp_by_disparity(img, disp, mode=mode),
             'warp_by_flow': lambda: warp_by_flow(img, flow, mode=mode),
             'sample': lambda: sample(img, coords, mode=mode),
             'warp_by_pose': lambda: warp_by_pose(img, depth, identity, K, mode=mode)}
    for name, call in calls.items():
        out, valid = call()[:2]
        (out.sum()).backward()
        assert torch.isfinite(out).all(), name
        if name == 'warp_by_pose' and bad == float('inf'):
            assert valid[hole].all(), name                  # +inf depth is the sky: valid, it does not move
        else:
            assert not valid[hole].any() and valid[~hole & (pixel_grid(h, w, device)[:, :1] >= 2)].all(), name
    for t in (img, disp, flow, coords):
        assert torch.isfinite(t.grad).all()
    assert torch.isfinite(depth.grad[~hole]).all()             # a NaN depth may get a NaN gradient, no other
    if mode == 'bilinear':
        for t in (disp, flow, coords):
            assert (t.grad[hole.expand_as(t.grad)] == 0).all()


def _box_before_wall(h=4, w=40, bg=2., fg=8., x0=20, x1=30):
    "Disparities of both views: a box (left columns [x0, x1), disparity fg) before a wall (disparity bg)."
    disp_l = torch.full((1, 1, h, w), bg)
    disp_l[..., x0:x1] = fg
    disp_r = torch.full((1, 1, h, w), bg)
    disp_r[..., x0 - int(fg):x1 - int(fg)] = fg
    return disp_l, disp_r


def test_occlusion_checks_call_nan_occluded(device):
    disp_l, disp_r = (t.to(device) for t in _box_before_wall())
    ref = lr_occlusion(disp_l, disp_r)
    far = torch.ones_like(ref, dtype=torch.bool)
    far[..., 10:25] = False                                  # pixels that neither are nor read a NaN
    dl = disp_l.clone()
    dl[..., 12:15] = float('nan')
    occ = lr_occlusion(dl, disp_r)
    assert (occ[..., 12:15] == 1).all() and (ref[..., 12:14] == 0).all()
    assert torch.equal(occ[far], ref[far])
    dr = disp_r.clone()
    dr[..., 12:15] = float('nan')                            # read by the box's left pixels 20…22 (x − 8)
    occ = lr_occlusion(disp_l, dr)
    assert (occ[..., 20:23] == 1).all() and (ref[..., 20:23] == 0).all()
    assert torch.equal(occ[far], ref[far])
    fw = torch.zeros(1, 2, 4, 40, device=device)
    fw[:, 0] = -disp_l[:, 0]
    bw = torch.zeros(1, 2, 4, 40, device=device)
    bw[:, 0] = disp_r[:, 0]
    fw_nan = fw.clone()
    fw_nan[..., 12:15] = float('nan')
    assert (fb_occlusion(fw_nan, bw)[..., 12:15] == 1).all()
    assert (fb_occlusion(fw, bw)[..., 12:14] == 0).all()


# ----------------------------------------------------------------------------------------------------------
# bad input → DepthnbInputError naming the argument

_img = lambda *s: torch.rand(*s) if s else torch.rand(1, 3, 5, 7)
_d = lambda: torch.rand(1, 1, 5, 7) + 1
_K = lambda: intrinsics(dtype=torch.float32)
_T = lambda: torch.eye(4)[None]
_f = lambda: torch.rand(1, 2, 5, 7)
_nan = lambda t: t.masked_fill(torch.zeros_like(t, dtype=torch.bool).index_fill_(-1, torch.tensor([2]), True),
                               float('nan'))

BAD = [
    ('wbd img ndim', lambda: warp_by_disparity(_img()[0], _d()), r'\bimg\b.*4 dimensions'),
    ('wbd disp channels', lambda: warp_by_disparity(_img(), _f()), r'\bdisp\b.*1 channel'),
    ('wbd disp ndim', lambda: warp_by_disparity(_img(), _d()[0]), r'\bdisp\b.*4 dimensions'),
    ('wbd sizes', lambda: warp_by_disparity(_img(), torch.rand(1, 1, 5, 8)), r'img and disp'),
    ('wbd batch', lambda: warp_by_disparity(_img(), torch.rand(2, 1, 5, 7)), r'img and disp'),
    ('wbd nan disp', lambda: warp_by_disparity(_img(), _nan(_d()), check=True), r'\bdisp\b.*NaN'),
    ('wbd inf disp', lambda: warp_by_disparity(_img(), _d() / 0, check=True), r'\bdisp\b.*Inf'),
    ('wbd mode', lambda: warp_by_disparity(_img(), _d(), mode='bicubic'), r'\bmode\b.*bicubic'),
    ('wbd reference', lambda: warp_by_disparity(_img(), _d(), reference='up'), r'\breference\b'),
    ('wbd int disp', lambda: warp_by_disparity(_img(), torch.ones(1, 1, 5, 7, dtype=torch.long)), r'\bdisp\b.*floating'),
    ('wbp img ndim', lambda: warp_by_pose(_img()[0], _d(), _T(), _K()), r'\bimg_s\b.*4 dimensions'),
    ('wbp depth channels', lambda: warp_by_pose(_img(), _f(), _T(), _K()), r'\bdepth_t\b.*1 channel'),
    ('wbp sizes', lambda: warp_by_pose(_img(), _d()[..., :6], _T(), _K()), r'img_s and depth_t'),
    ('wbp K shape', lambda: warp_by_pose(_img(), _d(), _T(), torch.eye(4)[None]), r'\bK\b.*3×3'),
    ('wbp mode', lambda: warp_by_pose(_img(), _d(), _T(), _K(), mode='area'), r'\bmode\b.*area'),
    ('wbp nonpositive depth', lambda: warp_by_pose(_img(), -_d(), _T(), _K(), check=True),
                 r'\bdepth\w*\b.*non-positive'),
    ('wbp nonpositive depth_t', lambda: warp_by_pose(_img(), _d() * 0, _T(), _K(), check=True),
                 r'\bdepth_t\b.*non-positive'),
    ('wbp T shape', lambda: warp_by_pose(_img(), _d(), torch.eye(3)[None], _K()), r'\bT_t_to_s\b'),
    ('wbp nan depth_t', lambda: warp_by_pose(_img(), _nan(_d()), _T(), _K(), check=True),
                 r'\bdepth_t\b.*NaN'),
    ('bp depth zero', lambda: backproject(_d() * 0, _K(), check=True), r'\bdepth\b.*non-positive'),
    ('bp depth nan', lambda: backproject(_nan(_d()), _K(), check=True), r'\bdepth\b.*NaN'),
    ('bp depth inf', lambda: backproject(_d() / 0, _K(), check=True), r'\bdepth\b.*Inf'),
    ('bp K_inv shape', lambda: backproject(_d(), torch.eye(2)), r'\bK_inv\b'),
    ('bp K_inv batch', lambda: backproject(_d(), _K().repeat(3, 1, 1)), r'\bK_inv\b.*batch'),
    ('project points channels', lambda: project(_d(), _K()), r'\bpoints\b.*3 channel'),
    ('rigid_flow depth', lambda: rigid_flow(-_d(), _T(), _K(), check=True), r'\bdepth\b.*non-positive'),
    ('rigid_flow T shape', lambda: rigid_flow(_d(), torch.eye(3)[None], _K()), r'\bT\b.*4×4'),
    ('pose vec width', lambda: pose_vec_to_mat(torch.zeros(2, 5)), r'\bvec\b.*B×6'),
    ('pose vec ndim', lambda: pose_vec_to_mat(torch.zeros(6)), r'\bvec\b.*2 dimensions'),
    ('pose vec int', lambda: pose_vec_to_mat(torch.zeros(2, 6, dtype=torch.long)), r'\bvec\b.*floating'),
    ('wbf flow channels', lambda: warp_by_flow(_img(), torch.rand(1, 3, 5, 7)), r'\bflow\b.*2 channel'),
    ('wbf sizes', lambda: warp_by_flow(_img(), torch.rand(1, 2, 6, 7)), r'img and flow'),
    ('wbf nan flow', lambda: warp_by_flow(_img(), _nan(_f()), check=True), r'\bflow\b.*NaN'),
    ('wbf mode', lambda: warp_by_flow(_img(), _f(), mode='cubic'), r'\bmode\b'),
    ('wbf img ndim', lambda: warp_by_flow(torch.rand(1, 3, 5), _f()), r'\bimg\b'),
    ('lr sizes', lambda: lr_occlusion(_d(), _d()[..., :6]), r'disp_l and disp_r'),
    ('lr disp_r channels', lambda: lr_occlusion(_d(), _f()), r'\bdisp_r\b.*1 channel'),
    ('lr disp_l channels', lambda: lr_occlusion(_f(), _d()), r'\bdisp_l\b'),
    ('lr nan disp_l', lambda: lr_occlusion(_nan(_d()), _d(), check=True), r'\bdisp_l\b.*NaN'),
    ('lr nan disp_r', lambda: lr_occlusion(_d(), _nan(_d()), check=True), r'\bdisp_r\b.*NaN'),
    ('fb sizes', lambda: fb_occlusion(_f(), _f()[..., :6]), r'flow_fw and flow_bw'),
    ('fb flow_bw channels', lambda: fb_occlusion(_f(), _d()), r'\bflow_bw\b.*2 channel'),
    ('fb nan flow_fw', lambda: fb_occlusion(_nan(_f()), _f(), check=True), r'\bflow_fw\b.*NaN'),
    ('fb nan flow_bw', lambda: fb_occlusion(_f(), _nan(_f()), check=True), r'\bflow_bw\b.*NaN'),
    ('splat channels', lambda: splat_disparity(_f()), r'\bdisp_l\b.*1 channel'),
    ('splat ndim', lambda: splat_disparity(_d()[0]), r'\bdisp_l\b.*4 dimensions'),
    ('splat valid size', lambda: splat_disparity(_d(), torch.ones(1, 1, 5, 6, dtype=torch.bool)),
                 r'\bvalid\b'),
    ('sample mode', lambda: sample(_img(), _f(), mode='area'), r'\bmode\b'),
    ('sample coords batch', lambda: sample(_img(), torch.rand(2, 2, 5, 7)), r'img and coords'),
    ('sample coords channels', lambda: sample(_img(), torch.rand(1, 3, 5, 7)), r'\bcoords\b.*2 channel'),
    ('disp_to_depth negative', lambda: disp_to_depth(-_d(), 1., 1.), r'\bdisp\b.*negative'),
    ('depth_to_disp zero', lambda: depth_to_disp(_d() * 0, 1., 1.), r'\bdepth\b.*non-positive'),
    ('disp_to_depth focal', lambda: disp_to_depth(_d(), torch.ones(3), 1.), r'\bfocal\b'),
    ('mirror ndim', lambda: mirror(_img()[0]), r'\bx\b.*4 dimensions'),
]


@pytest.mark.parametrize('name,call,match', [pytest.param(*b.values, marks=b.marks, id=b.values[0]) if hasattr(b, 'marks') else
                                              pytest.param(*b, id=b[0]) for b in BAD])
def test_bad_input(name, call, match):
    with pytest.raises(DepthnbInputError, match=match):
        call()


def test_warp_by_pose_positions_are_fp32_under_autocast():
    """Under AMP (here CPU bf16 autocast) the reprojected pixel positions equal the float32 ones: bf16
    matmuls would put them pixels off at 192 px wide (CoopNet found 1.8 px)."""
    import torch
    from depthnb.geometry import warp_by_pose, pose_vec_to_mat
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 64, 192, generator=g)
    depth = 2 + 30 * torch.rand(2, 1, 64, 192, generator=g)
    T = pose_vec_to_mat(torch.tensor([[0.01, -0.02, 0.005, 0.1, 0.02, 0.9]] * 2))
    K = torch.tensor([[180., 0, 96], [0, 180., 32], [0, 0, 1]])
    _, _, coords32 = warp_by_pose(img, depth, T, K)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        _, _, coords_amp = warp_by_pose(img, depth, T, K)
    assert coords_amp.dtype == torch.float32
    assert (coords_amp - coords32).abs().max() < 1e-3
