"""Tests of depthnb.metrics against independent NumPy re-implementations of the published evaluation code
(monodepth2 `evaluate_depth.py` / `compute_ate`, the KITTI stereo, flow, depth and odometry devkits)."""
import math

import numpy as np
import pytest
import torch

from depthnb.core import DepthnbInputError
from depthnb.metrics import (ate, confusion_matrix, depth_metrics, disparity_metrics, eigen_crop, flow_metrics, garg_crop,
                             iou_from_confusion, irmse, make3d_metrics, median_scale, miou, silog, snippet_positions,
                             trajectory_errors)

RTOL = 1e-9


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ----------------------------------------------------------------------------------------------------------------------
# NumPy references, written from the published scripts, not from depthnb

def np_eigen_errors(gt, pred):
    "monodepth2 evaluate_depth.compute_errors"
    thresh = np.maximum(gt / pred, pred / gt)
    a1, a2, a3 = [(thresh < 1.25 ** k).mean() for k in (1, 2, 3)]
    rmse = np.sqrt(((gt - pred) ** 2).mean())
    rmse_log = np.sqrt(((np.log(gt) - np.log(pred)) ** 2).mean())
    abs_rel = np.mean(np.abs(gt - pred) / gt)
    sq_rel = np.mean(((gt - pred) ** 2) / gt)
    return dict(abs_rel=abs_rel, sq_rel=sq_rel, rmse=rmse, rmse_log=rmse_log, a1=a1, a2=a2, a3=a3)


def np_eval_depth(gts, preds, min_depth=1e-3, max_depth=80., median=False, crop=None, valids=None):
    "monodepth2 evaluate_depth main loop over images (gts, preds: lists of H×W arrays)."
    errors, ratios = [], []
    for i, (gt, pred) in enumerate(zip(gts, preds)):
        h, w = gt.shape
        mask = np.logical_and(gt > min_depth, gt < max_depth)
        if crop is not None:
            fr = dict(garg=[0.40810811, 0.99189189, 0.03594771, 0.96405229], eigen=[0.3324324, 0.91351351, 0.0359477, 0.96405229])[crop]
            c = np.array([fr[0] * h, fr[1] * h, fr[2] * w, fr[3] * w]).astype(np.int32)
            crop_mask = np.zeros(mask.shape)
            crop_mask[c[0]:c[1], c[2]:c[3]] = 1
            mask = np.logical_and(mask, crop_mask)
        if valids is not None: mask = np.logical_and(mask, valids[i])
        g, p = gt[mask], pred[mask].copy()
        if median:
            ratio = np.median(g) / np.median(p)
            ratios.append(ratio)
            p *= ratio
        p[p < min_depth] = min_depth
        p[p > max_depth] = max_depth
        errors.append(np_eigen_errors(g, p))
    out = {k: np.mean([e[k] for e in errors]) for k in errors[0]}
    if median: out['scale'] = np.mean(ratios)
    return out


def np_kitti_depth(gt, pred):
    "KITTI depth devkit per image: silog (×100) and irmse (1/km) over gt > 0."
    m = gt > 0
    d = np.log(pred[m]) - np.log(gt[m])
    si = np.sqrt(np.mean(d ** 2) - np.mean(d) ** 2) * 100
    ir = np.sqrt(np.mean((1000 / gt[m] - 1000 / pred[m]) ** 2))
    return si, ir


def np_trajectory_errors(gt, pred, lengths=(100, 200, 300, 400, 500, 600, 700, 800), step=10):
    "Port of the KITTI odometry devkit (evaluate_odometry.cpp) for one sequence."
    dist = [0.]
    for i in range(1, len(gt)):
        dist.append(dist[-1] + np.linalg.norm(gt[i - 1][:3, 3] - gt[i][:3, 3]))
    errs = []
    for first in range(0, len(gt), step):
        for L in lengths:
            last = next((i for i in range(first, len(dist)) if dist[i] > dist[first] + L), -1)
            if last == -1: continue
            dg = np.linalg.inv(gt[first]) @ gt[last]
            dp = np.linalg.inv(pred[first]) @ pred[last]
            e = np.linalg.inv(dp) @ dg
            r = np.arccos(max(min(0.5 * (e[0, 0] + e[1, 1] + e[2, 2] - 1.0), 1.0), -1.0))
            t = np.linalg.norm(e[:3, 3])
            errs.append((r / L, t / L))
    errs = np.array(errs)
    return errs[:, 1].mean() * 100, errs[:, 0].mean() * 180 / np.pi * 100


def np_compute_ate(gtruth_xyz, pred_xyz_o):
    "monodepth2 evaluate_pose.compute_ate (as published)."
    offset = gtruth_xyz[0] - pred_xyz_o[0]
    pred_xyz = pred_xyz_o + offset[None, :]
    scale = np.sum(gtruth_xyz * pred_xyz) / np.sum(pred_xyz ** 2)
    alignment_error = pred_xyz * scale - gtruth_xyz
    return np.sqrt(np.sum(alignment_error ** 2)) / gtruth_xyz.shape[0]


def np_dump_xyz(source_to_target_transformations):
    "monodepth2 evaluate_pose.dump_xyz"
    xyzs, cam_to_world = [], np.eye(4)
    xyzs.append(cam_to_world[:3, 3])
    for T in source_to_target_transformations:
        cam_to_world = np.dot(cam_to_world, T)
        xyzs.append(cam_to_world[:3, 3])
    return np.array(xyzs)


def random_depth(rng, b=3, h=60, w=200):
    gt = rng.uniform(0.5, 100., (b, h, w))
    gt[rng.random((b, h, w)) < 0.3] = 0.           # KITTI-like missing ground truth
    pred = gt * rng.uniform(0.7, 1.4, (b, h, w)) + rng.uniform(0.1, 1., (b, h, w))
    pred[gt == 0] = rng.uniform(1, 90, int((gt == 0).sum()))
    return gt, pred


def rot(axis_angle):
    r = np.asarray(axis_angle, float)
    th = np.linalg.norm(r)
    if th < 1e-12: return np.eye(3)
    k = r / th
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(th) * K + (1 - np.cos(th)) * K @ K


def random_trajectory(rng, n=320):
    "Camera-to-world poses of a wiggly forward drive at ~1 m per frame."
    P, poses = np.eye(4), []
    for _ in range(n):
        poses.append(P.copy())
        T = np.eye(4)
        T[:3, :3] = rot(rng.normal(0, [0.002, 0.02, 0.002]))
        T[:3, 3] = [rng.normal(0, 0.02), rng.normal(0, 0.01), rng.uniform(0.8, 1.2)]
        P = P @ T
    return np.stack(poses)


def perturb(rng, poses, s=0.01):
    "A noisy estimate: the same relative motions with small rotation and translation noise."
    out, P = [poses[0].copy()], poses[0].copy()
    for a, b in zip(poses[:-1], poses[1:]):
        T = np.linalg.inv(a) @ b
        N = np.eye(4); N[:3, :3] = rot(rng.normal(0, s, 3)); N[:3, 3] = rng.normal(0, s * 5, 3)
        P = P @ T @ N
        out.append(P.copy())
    return np.stack(out)


t = lambda a: torch.from_numpy(np.ascontiguousarray(a))


# ----------------------------------------------------------------------------------------------------------------------
# depth

@pytest.mark.parametrize('median', [False, True])
@pytest.mark.parametrize('crop', [None, 'garg', 'eigen'])
def test_depth_metrics_matches_monodepth2(rng, median, crop):
    gt, pred = random_depth(rng)
    ref = np_eval_depth(list(gt), list(pred), median=median, crop=crop)
    out = depth_metrics(t(gt[:, None]), t(pred[:, None]), median_scaling=median, crop=crop)
    assert set(out) == set(ref)
    for k in ref: np.testing.assert_allclose(out[k], ref[k], rtol=RTOL, err_msg=k)


def test_depth_metrics_garg_cap_valid_and_float32(rng):
    gt, pred = random_depth(rng)
    valid = rng.random(gt.shape) < 0.8
    ref = np_eval_depth(list(gt), list(pred), max_depth=50., crop='garg', valids=list(valid))
    out = depth_metrics(t(gt[:, None]), t(pred[:, None]), valid=t(valid[:, None]), max_depth=50., crop='garg')
    for k in ref: np.testing.assert_allclose(out[k], ref[k], rtol=RTOL, err_msg=k)
    out32 = depth_metrics(t(gt).float()[:, None], t(pred).float()[:, None], valid=t(valid), max_depth=50., crop='garg')
    for k in ref: np.testing.assert_allclose(out32[k], ref[k], rtol=1e-5, err_msg=k)


def test_depth_metrics_closed_forms(rng):
    gt = t(rng.uniform(1, 70, (2, 1, 20, 30)))
    out = depth_metrics(gt, gt.clone())
    assert out['abs_rel'] == 0 and out['sq_rel'] == 0 and out['rmse'] == 0 and out['rmse_log'] == 0
    assert out['a1'] == out['a2'] == out['a3'] == 1
    # a known per-image scale makes median scaling exact
    k = torch.tensor([0.1, 7.], dtype=torch.float64).view(2, 1, 1, 1)
    out = depth_metrics(gt, gt * k, median_scaling=True)
    np.testing.assert_allclose(out['abs_rel'], 0, atol=1e-12)
    np.testing.assert_allclose(out['scale'], (10 + 1 / 7) / 2, rtol=1e-12)
    assert out['a1'] == 1
    # a single H×W map is one image
    np.testing.assert_allclose(depth_metrics(gt[0, 0], gt[0, 0] * 1.1)['abs_rel'], 0.1, rtol=1e-9)


def test_crops_match_monodepth2():
    m = garg_crop(375, 1242)
    ref = np.zeros((375, 1242), bool); ref[153:371, 44:1197] = True     # monodepth2 compute_depth_losses
    np.testing.assert_array_equal(m.numpy(), ref)
    ref = np.zeros((375, 1242), bool); ref[124:342, 44:1197] = True
    np.testing.assert_array_equal(eigen_crop(375, 1242).numpy(), ref)


def test_median_scale(rng):
    gt, pred = random_depth(rng, b=2, h=7, w=9)          # odd and even valid counts both occur
    valid = gt > 0
    scaled, ratio = median_scale(t(gt[:, None]), t(pred[:, None]), t(valid[:, None]))
    for b in range(2):
        r = np.median(gt[b][valid[b]]) / np.median(pred[b][valid[b]])
        np.testing.assert_allclose(ratio[b].item(), r, rtol=1e-12)
        np.testing.assert_allclose(scaled[b, 0].numpy(), pred[b] * r, rtol=1e-12)


def test_silog_irmse_match_kitti_devkit(rng):
    gt, pred = random_depth(rng)
    ref = np.array([np_kitti_depth(g, p) for g, p in zip(gt, pred)]).mean(0)
    np.testing.assert_allclose(silog(t(gt[:, None]), t(pred[:, None])), ref[0], rtol=RTOL)
    np.testing.assert_allclose(irmse(t(gt[:, None]), t(pred[:, None])), ref[1], rtol=RTOL)
    np.testing.assert_allclose(silog(t(gt[:, None]), t(np.where(gt == 0, 1., gt * 3)[:, None])), 0, atol=1e-5)


def test_make3d_matches_reference(rng):
    gt, pred = random_depth(rng)
    for median in (False, True):
        rows, ratios = [], []
        for g, p in zip(gt, pred):
            m = np.logical_and(g > 0, g < 70)
            g, p = g[m], p[m].copy()
            if median:
                ratios.append(np.median(g) / np.median(p)); p *= ratios[-1]
            p = np.clip(p, 0, 70)
            dl = np.log10(g) - np.log10(p)
            rows.append([np.mean(np.abs(g - p) / g), np.mean((g - p) ** 2 / g), np.sqrt(np.mean((g - p) ** 2)),
                         np.mean(np.abs(dl)), np.sqrt(np.mean(dl ** 2))])
        ref = dict(zip(['abs_rel', 'sq_rel', 'rmse', 'log10', 'rmse_log10'], np.mean(rows, 0)))
        out = make3d_metrics(t(gt[:, None]), t(pred[:, None]), median_scaling=median)
        for k in ref: np.testing.assert_allclose(out[k], ref[k], rtol=RTOL, err_msg=k)
        if median: np.testing.assert_allclose(out['scale'], np.mean(ratios), rtol=RTOL)


# ----------------------------------------------------------------------------------------------------------------------
# disparity, flow, segmentation

def test_disparity_metrics_match_kitti_devkit(rng):
    gt = rng.uniform(1, 150, (2, 1, 40, 60)); gt[rng.random(gt.shape) < 0.3] = 0
    pred = gt + rng.normal(0, 4, gt.shape)
    m = gt > 0
    err = np.abs(pred - gt)[m]
    ref = dict(epe=err.mean(), d1=np.mean((err > 3) & (err / np.abs(gt[m]) > 0.05)),
               bad1=np.mean(err > 1), bad2=np.mean(err > 2), bad3=np.mean(err > 3))
    out = disparity_metrics(t(gt), t(pred))
    assert set(out) == set(ref) | {'pixels'} and out['pixels'] == m.sum()
    for k in ref: np.testing.assert_allclose(out[k], ref[k], rtol=RTOL, err_msg=k)
    assert all(0 <= out[k] <= 1 for k in ('d1', 'bad1', 'bad2', 'bad3'))
    # an explicit mask; Middlebury-style +inf ground truth is never counted
    gt_inf = gt.copy(); gt_inf[gt == 0] = np.inf
    valid = rng.random(gt.shape) < 0.5
    out = disparity_metrics(t(gt_inf), t(pred), valid=t(valid))
    mv = valid & np.isfinite(gt_inf)
    np.testing.assert_allclose(out['epe'], np.abs(pred - gt_inf)[mv].mean(), rtol=RTOL)
    assert out['pixels'] == mv.sum()
    # `valid` narrows, never widens: gt 0 (KITTI's missing value) does not count where valid is True
    out = disparity_metrics(t(gt), t(pred), valid=t(np.ones(gt.shape, bool)))
    np.testing.assert_allclose(out['epe'], err.mean(), rtol=RTOL)
    assert out['pixels'] == m.sum()


def test_flow_metrics_match_kitti_devkit(rng):
    gt = rng.normal(0, 20, (2, 2, 30, 40)); pred = gt + rng.normal(0, 3, gt.shape)
    valid = rng.random((2, 30, 40)) < 0.7
    noc = rng.random((2, 30, 40)) < 0.6
    epe = np.sqrt(((pred - gt) ** 2).sum(1)); mag = np.sqrt((gt ** 2).sum(1))
    out_ = (epe > 3) & (epe / mag > 0.05)
    out = flow_metrics(t(gt), t(pred), t(valid), noc=t(noc))
    np.testing.assert_allclose(out['epe'], epe[valid].mean(), rtol=RTOL)
    np.testing.assert_allclose(out['fl_all'], out_[valid].mean(), rtol=RTOL)
    np.testing.assert_allclose(out['epe_noc'], epe[valid & noc].mean(), rtol=RTOL)
    np.testing.assert_allclose(out['fl_noc'], out_[valid & noc].mean(), rtol=RTOL)
    assert (out['pixels'], out['pixels_noc']) == (valid.sum(), (valid & noc).sum())
    assert 'epe_noc' not in flow_metrics(t(gt), t(pred))
    assert flow_metrics(t(gt[0]), t(gt[0]))['epe'] == 0


def test_miou_matches_reference(rng):
    C = 6
    gt = rng.integers(0, C - 1, (2, 20, 30)); gt[rng.random(gt.shape) < 0.1] = 255     # class 5 never appears
    pred = np.where(rng.random(gt.shape) < 0.7, np.where(gt == 255, 0, gt), rng.integers(0, C - 1, gt.shape))
    m = gt != 255
    ious = []
    for c in range(C):
        inter = np.sum((pred == c) & (gt == c) & m); union = np.sum(((pred == c) | (gt == c)) & m)
        ious.append(inter / union if union else np.nan)
    out = miou(t(pred), t(gt), C)
    np.testing.assert_allclose(out['iou'], ious, rtol=RTOL)
    assert math.isnan(out['iou'][5])
    np.testing.assert_allclose(out['miou'], np.nanmean(ious), rtol=RTOL)
    cm = confusion_matrix(t(pred), t(gt), C)
    assert cm.sum() == m.sum() and cm[2, 2] == np.sum((pred == 2) & (gt == 2) & m)
    # accumulating confusion matrices over a "dataset" equals one call on everything
    acc = confusion_matrix(t(pred[:1]), t(gt[:1]), C) + confusion_matrix(t(pred[1:]), t(gt[1:]), C)
    assert iou_from_confusion(acc)['miou'] == pytest.approx(out['miou'])
    assert miou(t(gt), t(gt), C)['miou'] == 1


# ----------------------------------------------------------------------------------------------------------------------
# odometry

def test_trajectory_errors_match_devkit(rng):
    gt = random_trajectory(rng)
    pred = perturb(rng, gt)
    t_ref, r_ref = np_trajectory_errors(gt, pred)
    out = trajectory_errors(t(gt), t(pred))
    np.testing.assert_allclose(out['t_err'], t_ref, rtol=1e-8)
    np.testing.assert_allclose(out['r_err'], r_ref, rtol=1e-8)
    assert out['t_err'] > 0 and out['r_err'] > 0
    # KITTI poses-file layout N×12 gives the same numbers
    out12 = trajectory_errors(t(gt[:, :3].reshape(-1, 12)), t(pred[:, :3].reshape(-1, 12)))
    np.testing.assert_allclose(out12['t_err'], t_ref, rtol=1e-8)


def test_trajectory_errors_closed_forms(rng):
    n = 900
    gt = np.tile(np.eye(4), (n, 1, 1)); gt[:, 2, 3] = np.arange(n)       # straight, 1 m per frame
    pred = gt.copy(); pred[:, 2, 3] *= 1.05                             # constant 5 % drift
    # the segment from f ends at f + L + 1 (first frame beyond L): error 0.05 (L + 1) over length L
    segs = [0.05 * (L + 1) / L for f in range(0, n, 10) for L in range(100, 900, 100) if f + L + 1 < n]
    out = trajectory_errors(t(gt), t(pred))
    np.testing.assert_allclose(out['t_err'], 100 * np.mean(segs), rtol=1e-12)
    assert out['r_err'] == 0
    same = trajectory_errors(t(gt), t(gt))
    assert same['t_err'] == 0 and same['r_err'] == 0
    # alignment: a scaled copy, and a similarity-transformed copy, score zero after alignment
    wiggly = random_trajectory(rng, 250)
    scaled = wiggly.copy(); scaled[:, :3, 3] *= 0.3
    assert trajectory_errors(t(wiggly), t(scaled))['t_err'] > 50
    np.testing.assert_allclose(list(trajectory_errors(t(wiggly), t(scaled), align='scale').values()), [0, 0], atol=1e-6)  # acos near 1: ~1e-8
    S = np.eye(4); S[:3, :3] = rot([0.3, -1.0, 0.2]); S[:3, 3] = [5, -2, 7]
    sim = S @ scaled
    np.testing.assert_allclose(list(trajectory_errors(t(wiggly), t(sim), align='sim3').values()), [0, 0], atol=1e-6)


def test_snippet_positions_and_ate(rng):
    G = random_trajectory(rng, 5)
    G = np.linalg.inv(G[0]) @ G                          # snippet: first frame at the origin
    rel = np.linalg.inv(G[:-1]) @ G[1:]                  # T_{i+1 -> i}
    xyz = snippet_positions(t(rel))
    np.testing.assert_allclose(xyz.numpy(), np_dump_xyz(rel), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xyz.numpy(), G[:, :3, 3], atol=1e-12)
    pred = xyz.numpy() + rng.normal(0, 0.05, (5, 3)); pred[0] = 0
    np.testing.assert_allclose(ate(xyz, t(pred)), np_compute_ate(xyz.numpy(), pred), rtol=1e-12)
    s = np.sum(xyz.numpy() * pred) / np.sum(pred ** 2)
    np.testing.assert_allclose(ate(xyz, t(pred), true_rmse=True),
                               np.sqrt(np.mean(np.sum((pred * s - xyz.numpy()) ** 2, 1))), rtol=1e-12)
    np.testing.assert_allclose(ate(xyz, xyz * 0.37), 0, atol=1e-12)   # a scaled copy
    np.testing.assert_allclose(ate(xyz, xyz), 0, atol=1e-12)


# ----------------------------------------------------------------------------------------------------------------------
# bad input

def test_bad_input_depth():
    gt = torch.rand(2, 1, 8, 9) * 10 + 1
    with pytest.raises(DepthnbInputError, match=r'gt and pred must have the same shape, got 2×1×8×9 and 2×1×8×8'):
        depth_metrics(gt, gt[..., :8])
    with pytest.raises(DepthnbInputError, match=r'pred must be B×1×H×W or H×W, got shape 2×3×8×9'):
        depth_metrics(gt, gt.expand(2, 3, 8, 9))
    nan = gt.clone(); nan[0, 0, 0, 0] = float('nan')
    with pytest.raises(DepthnbInputError, match=r'pred \(shape 2×1×8×9\) contains NaN'):
        depth_metrics(gt, nan)
    with pytest.raises(DepthnbInputError, match=r'pred \(shape 2×1×8×9\) has 1 non-positive'):
        depth_metrics(gt, torch.where(gt == gt.max(), torch.zeros_like(gt), gt))
    with pytest.raises(DepthnbInputError, match=r'image 1 of gt \(shape 2×1×8×9\) has no valid pixel'):
        depth_metrics(gt * torch.tensor([1., 100.]).view(2, 1, 1, 1), gt)
    with pytest.raises(DepthnbInputError, match=r'valid must be a bool tensor'):
        depth_metrics(gt, gt, valid=torch.ones(2, 1, 8, 9))
    with pytest.raises(DepthnbInputError, match=r'valid must be B×1×H×W, B×H×W or H×W .* got shape 3×8×9'):
        depth_metrics(gt, gt, valid=torch.ones(3, 8, 9, dtype=torch.bool))
    with pytest.raises(DepthnbInputError, match=r"crop must be 'garg', 'eigen'"):
        depth_metrics(gt, gt, crop='kitti')
    with pytest.raises(DepthnbInputError, match=r'gt must be a torch.Tensor, got ndarray'):
        depth_metrics(gt.numpy(), gt)
    with pytest.raises(DepthnbInputError, match=r'pred \(shape 2×1×8×9\) has 1 non-positive'):
        silog(gt, torch.where(gt == gt.max(), -gt, gt))
    with pytest.raises(DepthnbInputError, match=r'no valid pixel'):
        irmse(torch.zeros(4, 4), torch.ones(4, 4))


def test_bad_input_disparity_flow_miou():
    with pytest.raises(DepthnbInputError, match=r'pred \(shape 1×1×2×2\) contains 1 NaN'):
        disparity_metrics(torch.ones(1, 1, 2, 2), torch.tensor([[[[1., float('nan')], [1, 1]]]]))
    with pytest.raises(DepthnbInputError, match=r'no valid pixel in gt \(shape 1×1×2×2\)'):
        disparity_metrics(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2))
    with pytest.raises(DepthnbInputError, match=r'gt must be B×2×H×W or 2×H×W, got shape 1×1×4×4'):
        flow_metrics(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))
    with pytest.raises(DepthnbInputError, match=r'no valid pixel .* noc'):
        flow_metrics(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), noc=torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(DepthnbInputError, match=r'pred and gt must have the same shape, got 2×3 and 3×2'):
        miou(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long), 3)
    with pytest.raises(DepthnbInputError, match=r'gt must be an integer label tensor'):
        miou(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), 3)
    with pytest.raises(DepthnbInputError, match=r'gt \(shape 2×3\) has labels outside \[0, 3\)'):
        miou(torch.zeros(2, 3, dtype=torch.long), torch.full((2, 3), 4), 3)
    with pytest.raises(DepthnbInputError, match=r'empty'):
        miou(torch.zeros(2, 3, dtype=torch.long), torch.full((2, 3), 255), 3)


def test_bad_input_odometry():
    gt = torch.eye(4).repeat(50, 1, 1); gt[:, 2, 3] = torch.arange(50.)
    with pytest.raises(DepthnbInputError, match=r'shorter|not more than the shortest segment length 100 m'):
        trajectory_errors(gt, gt)
    with pytest.raises(DepthnbInputError, match=r'pred_poses must be N×4×4, N×3×4 or N×12 .* got shape 50×4×3'):
        trajectory_errors(gt, gt[:, :, :3])
    with pytest.raises(DepthnbInputError, match=r'same length, got 50×4×4 and 40×4×4'):
        trajectory_errors(gt, gt[:40])
    with pytest.raises(DepthnbInputError, match=r"align must be None, 'scale' or 'sim3'"):
        trajectory_errors(gt, gt, lengths=(10,), align='se3')
    with pytest.raises(DepthnbInputError, match=r'pred_xyz must be an N×3 tensor .* got shape 5×2'):
        ate(torch.zeros(5, 3), torch.zeros(5, 2))
    with pytest.raises(DepthnbInputError, match=r'does not move'):
        ate(torch.rand(5, 3), torch.ones(5, 3))
    with pytest.raises(DepthnbInputError, match=r'rel_poses must be N×4×4'):
        snippet_positions(torch.zeros(4, 4))
