"""The one evaluation loop (`depthnb.evaluation`): every accumulator against hand-computed or numpy
references, pixel-weighted pooling over images of different valid-pixel counts, the `disp_l_valid`
narrowing regression, and `evaluate` with a fake method on a small in-memory dataset."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import depthnb
from depthnb.core import DepthnbInputError
from depthnb.evaluation import (
    METRICS, DepthMetrics, DisparityMetrics, FlowMetrics, OdometryMetrics, RegionMetrics, SegmentationMetrics,
    calibrated_depth, disparity_valid, evaluate, make_metrics, predict_inputs, region_masks,
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


# ----------------------------------------------------------------------------------------------------------
# disparity: which pixels count, and pooling

def test_disp_l_valid_narrows_never_widens():
    "Regression: a pixel with disp_l_valid True but GT 0 or inf must not count (old evaluate_disparity did)."
    gt = torch.tensor([10., 0., float('inf'), 20.]).view(1, 1, 1, 4)
    batch = {'disp_l': gt, 'disp_l_valid': torch.ones(1, 1, 1, 4, dtype=torch.bool)}
    assert disparity_valid(batch)[0, 0, 0].tolist() == [True, False, False, True]
    acc = DisparityMetrics()
    acc.update(batch, {'disp': torch.tensor([11., 5., 5., 22.]).view(1, 1, 1, 4)})
    r = acc.result()
    assert r['pixels'] == 2
    assert r['epe'] == pytest.approx(1.5)
    # and the mask does narrow: a False pixel with good GT is left out
    batch['disp_l_valid'] = torch.tensor([True, True, True, False]).view(1, 1, 1, 4)
    acc.reset()
    acc.update(batch, {'disp': torch.tensor([11., 5., 5., 22.]).view(1, 1, 1, 4)})
    assert acc.result()['pixels'] == 1 and acc.result()['epe'] == pytest.approx(1.)


def test_disparity_hand_case():
    acc = DisparityMetrics()
    acc.update({'disp_l': torch.tensor([10., 100., 0., 50.]).view(1, 1, 1, 4)},
               {'disp': torch.tensor([14., 104., 9., 50.5]).view(1, 1, 1, 4)})
    r = acc.result()
    assert r == pytest.approx(dict(epe=8.5 / 3, d1=1 / 3, bad1=2 / 3, bad2=2 / 3, bad3=2 / 3, pixels=3))


def test_pooling_is_pixel_weighted_over_images(rng):
    "Images of different valid-pixel counts: pooled = pixel-weighted mean of per-image results, any batch."
    n, h, w = 6, 8, 12
    gt = rng.uniform(1, 60, (n, 1, h, w))
    for i in range(n):
        gt[i].reshape(-1)[:11 * i] = 0                         # image i: 96 − 11·i valid pixels
    pred = gt + rng.normal(0, 3, gt.shape)
    counts, rows = [], []
    for i in range(n):
        m = gt[i] > 0
        err = np.abs(pred[i] - gt[i])[m]
        counts.append(m.sum())
        d1 = np.mean((err > 3) & (err > 0.05 * gt[i][m]))
        bad = {f'bad{k}': np.mean(err > k) for k in (1, 2, 3)}
        rows.append(dict(epe=err.mean(), d1=d1, **bad))
    assert len(set(counts)) == n
    for bs in (1, 4, 6):
        acc = DisparityMetrics()
        for i in range(0, n, bs):
            acc.update({'disp_l': t(gt[i:i + bs])}, {'disp': t(pred[i:i + bs])})
        r = acc.result()
        assert r['pixels'] == sum(counts)
        for k in rows[0]:
            np.testing.assert_allclose(r[k], np.average([row[k] for row in rows], weights=counts), rtol=1e-12)
        # and the per-image mean (what a wrong pooling would give) differs
        assert abs(r['epe'] - np.mean([row['epe'] for row in rows])) > 1e-6


def test_disparity_without_any_valid_pixel():
    acc = DisparityMetrics()
    acc.update({'disp_l': torch.zeros(1, 1, 2, 2)}, {'disp': torch.ones(1, 1, 2, 2)})
    with pytest.raises(DepthnbInputError, match='no pixel'):
        acc.result()
    with pytest.raises(DepthnbInputError, match="pred\\['disp'\\]"):
        acc.update({'disp_l': torch.ones(1, 1, 2, 2)}, {'flow': torch.ones(1, 2, 2, 2)})


# ----------------------------------------------------------------------------------------------------------
# depth

def _eigen(g, p):
    "monodepth2 evaluate_depth.compute_errors"
    thresh = np.maximum(g / p, p / g)
    return dict(abs_rel=np.mean(np.abs(g - p) / g), sq_rel=np.mean((g - p) ** 2 / g),
                rmse=np.sqrt(np.mean((g - p) ** 2)), rmse_log=np.sqrt(np.mean((np.log(g) - np.log(p)) ** 2)),
                a1=np.mean(thresh < 1.25), a2=np.mean(thresh < 1.25 ** 2), a3=np.mean(thresh < 1.25 ** 3))


def test_depth_is_averaged_per_image(rng):
    n = 5
    gt = rng.uniform(2, 90, (n, 1, 6, 9))
    for i in range(n):
        gt[i].reshape(-1)[:7 * i] = 0
    pred = np.where(gt > 0, gt, 30.) * rng.uniform(0.8, 1.2, gt.shape)      # positive everywhere
    rows = []
    for i in range(n):
        m = (gt[i] > 1e-3) & (gt[i] < 80)
        rows.append(_eigen(gt[i][m], np.clip(pred[i][m], 1e-3, 80)))
    for bs in (1, 2, 5):
        acc = DepthMetrics()
        for i in range(0, n, bs):
            acc.update({'depth_l': t(gt[i:i + bs])}, {'depth': t(pred[i:i + bs])})
        r = acc.result()
        assert r['images'] == n
        for k in rows[0]:
            np.testing.assert_allclose(r[k], np.mean([row[k] for row in rows]), rtol=1e-12, err_msg=k)


def test_depth_valid_mask_and_median_scaling():
    gt = torch.tensor([2., 4., 6., 8.]).view(1, 1, 1, 4)
    acc = DepthMetrics(median_scaling=True)
    acc.update({'depth_l': gt, 'depth_l_valid': torch.tensor([True, True, True, False]).view(1, 1, 1, 4)},
               {'depth': torch.tensor([1., 2., 3., 100.]).view(1, 1, 1, 4)})
    r = acc.result()
    assert r['abs_rel'] == pytest.approx(0, abs=1e-12) and r['scale'] == pytest.approx(2.)


def test_depth_from_disparity_and_calibration():
    "f·B/(d + doffs): GT 10 px and 25 px at f=100, B=0.5, doffs=0 are 5 m and 2 m."
    batch = {'disp_l': torch.tensor([10., 25., 0.]).view(1, 1, 1, 3),
             'K': torch.diag(torch.tensor([100., 100., 1.]))[None], 'baseline': torch.tensor([0.5])}
    acc = DepthMetrics()
    acc.update(batch, {'disp': torch.tensor([10., 20., 7.]).view(1, 1, 1, 3)})
    assert acc.result()['abs_rel'] == pytest.approx(0.125)
    depth = calibrated_depth(torch.tensor([15.]).view(1, 1, 1, 1), batch | {'doffs': torch.tensor([5.])})
    assert float(depth) == pytest.approx(2.5)
    with pytest.raises(DepthnbInputError, match="'K'"):
        DepthMetrics().update({'disp_l': batch['disp_l']}, {'disp': batch['disp_l']})


# ----------------------------------------------------------------------------------------------------------
# flow, segmentation, odometry, regions

def test_flow_against_numpy(rng):
    gt = rng.normal(0, 20, (3, 2, 10, 14))
    pred = gt + rng.normal(0, 3, gt.shape)
    valid = rng.random((3, 1, 10, 14)) < 0.8
    moving = rng.random((3, 1, 10, 14)) < 0.3
    acc = FlowMetrics()
    for i in range(3):
        batch = {'flow_next': t(gt[i:i + 1]), 'flow_next_valid': t(valid[i:i + 1]),
                 'moving': t(moving[i:i + 1])}
        acc.update(batch, {'flow': t(pred[i:i + 1])})
    r = acc.result()
    epe = np.sqrt(((pred - gt) ** 2).sum(1, keepdims=True))
    outlier = (epe > 3) & (epe > 0.05 * np.sqrt((gt ** 2).sum(1, keepdims=True)))
    np.testing.assert_allclose(r['epe'], epe[valid].mean(), rtol=1e-12)
    np.testing.assert_allclose(r['fl_all'], outlier[valid].mean(), rtol=1e-12)
    np.testing.assert_allclose(r['epe_moving'], epe[valid & moving].mean(), rtol=1e-12)
    np.testing.assert_allclose(r['fl_moving'], outlier[valid & moving].mean(), rtol=1e-12)
    assert (r['pixels'], r['pixels_moving']) == (valid.sum(), (valid & moving).sum())


def test_segmentation_accumulates_one_confusion_matrix(rng):
    C = 4
    gt = rng.integers(0, C, (3, 1, 5, 7))
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = np.where(rng.random(gt.shape) < 0.7, gt, rng.integers(0, C, gt.shape)) % 256
    pred[pred == 255] = 0
    acc = SegmentationMetrics(num_classes=C)
    for i in range(3):
        acc.update({'semantic': t(gt[i:i + 1])}, {'semantic': t(pred[i:i + 1, 0])})
    r = acc.result()
    keep = gt != 255
    ious = []
    for c in range(C):
        inter = np.sum((gt == c) & (pred == c) & keep)
        union = np.sum(((gt == c) | (pred == c)) & keep)
        ious.append(inter / union)
    np.testing.assert_allclose(r['iou'], ious, rtol=1e-12)
    np.testing.assert_allclose(r['miou'], np.mean(ious), rtol=1e-12)
    assert r['pixels'] == keep.sum()


def _translation(x, y, z):
    T = torch.eye(4, dtype=torch.float64)
    T[:3, 3] = torch.tensor([x, y, z], dtype=torch.float64)
    return T


def test_odometry_snippet_ate():
    "Camera 1 m forward per frame; a prediction whose next frame drifts 1 m sideways: ATE √(5/6)/3."
    batch = {'T_prev': _translation(0, 0, 1)[None], 'T_next': _translation(0, 0, -1)[None]}
    acc = OdometryMetrics()
    acc.update(batch, {'T_prev': _translation(0, 0, 1)[None], 'T_next': _translation(-1, 0, -1)[None]})
    acc.update(batch, {'T_prev': _translation(0, 0, 3)[None], 'T_next': _translation(0, 0, -3)[None]})
    r = acc.result()
    assert r['snippets'] == 2
    assert r['ate'] == pytest.approx(math.sqrt(5 / 6) / 6)
    assert r['ate_std'] == pytest.approx(math.sqrt(5 / 6) / 6)


def test_region_metrics_pool_per_region(rng):
    samples = []
    for i in range(3):
        disp = torch.from_numpy(rng.uniform(1, 30, (1, 8, 10))).float()
        disp.view(-1)[:5 * i] = 0
        occ = (torch.rand(1, 8, 10) < 0.3).float()
        samples.append(dict(left=torch.rand(3, 8, 10), disp_l=disp, occ_l=occ))
    batch = {k: torch.stack([s[k] for s in samples]) for k in samples[0]}
    pred = batch['disp_l'] + torch.from_numpy(rng.normal(0, 3, (3, 1, 8, 10))).float()
    acc = RegionMetrics()
    acc.update({k: v[:1] for k, v in batch.items()}, {'disp': pred[:1]})
    acc.update({k: v[1:] for k, v in batch.items()}, {'disp': pred[1:]})
    r = acc.result()
    masks = region_masks(batch)
    err = (pred.double() - batch['disp_l'].double()).abs()
    for region, m in masks.items():
        if not bool(m.any()):
            assert region not in r
            continue
        assert r[region]['pixels'] == int(m.sum())
        np.testing.assert_allclose(r[region]['epe'], float(err[m].mean()), rtol=1e-9)
        assert r[region]['fraction'] == pytest.approx(int(m.sum()) / int(masks['all'].sum()))
        assert set(r[region]) == {'epe', 'd1', 'fraction', 'pixels'}


# ----------------------------------------------------------------------------------------------------------
# the loop

def toy_dataset(n=5, size=(6, 10), seed=0):
    "Stereo samples whose left image's first channel is disp_l / 64; GT 0 / inf pixels under a True mask."
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        disp = torch.rand(1, *size, generator=gen) * 60 + 1
        left = torch.rand(3, *size, generator=gen)
        left[0] = disp[0] / 64
        disp.view(-1)[:4 * i] = 0.
        disp.view(-1)[4 * i:5 * i] = float('inf')
        out.append(dict(left=left, right=torch.rand(3, *size, generator=gen), disp_l=disp,
                        disp_l_valid=torch.ones(1, *size, dtype=torch.bool), occ_l=torch.zeros(1, *size),
                        K=torch.diag(torch.tensor([50., 50., 1.])), baseline=torch.tensor(0.5),
                        name=f'toy-{i}'))
    return out


class NoisyStereo(nn.Module):
    "GT (read back from the image) + noise from the image's second channel, uniform in ±3 px."
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.calls = []

    def predict(self, left, right=None):
        self.calls.append(right is not None)
        return {'disp': left[:, :1] * 64 + 3 * (2 * left[:, 1:2] - 1)}


class Mono(nn.Module):
    stereo = False

    def predict(self, left):
        return {'disp': left[:, :1] * 64}


def test_evaluate_fake_method_on_in_memory_dataset():
    data = toy_dataset()
    method = NoisyStereo()
    r = evaluate(method, data, ['disparity', 'regions', 'depth'], batch_size=2)
    assert set(r) == {'disparity', 'regions', 'depth', 'samples'} and r['samples'] == 5
    assert all(method.calls) and len(method.calls) == 3                # right passed; one call a batch
    assert method.training                                              # mode restored
    gt = torch.cat([s['disp_l'] for s in data]).double()
    pred = torch.cat([method.predict(s['left'][None])['disp'][0] for s in data]).double()
    ok = torch.isfinite(gt) & (gt > 0)
    err = (pred - gt).abs()[ok]
    assert r['disparity']['pixels'] == int(ok.sum()) == 5 * 60 - 5 * 10
    np.testing.assert_allclose(r['disparity']['epe'], float(err.mean()), rtol=1e-9)
    np.testing.assert_allclose(r['regions']['all']['epe'], float(err.mean()), rtol=1e-9)
    assert 'occluded' not in r['regions']                              # no occluded pixel: left out
    assert r['regions']['non_occluded']['pixels'] == int(ok.sum())
    for bs in (1, 5):
        epe = evaluate(method, data, batch_size=bs)['disparity']['epe']
        np.testing.assert_allclose(epe, float(err.mean()), rtol=1e-9)
    assert depthnb.evaluate is evaluate
    assert evaluate(method, data, n=2)['samples'] == 2


def test_evaluate_mono_method_gets_left_only():
    r = evaluate(Mono(), toy_dataset(3), ['disparity', 'depth'])
    assert r['disparity']['epe'] == pytest.approx(0, abs=1e-5)
    assert r['depth']['abs_rel'] == pytest.approx(0, abs=1e-6)
    assert set(predict_inputs(Mono(), {'left': 1, 'right': 2})) == {'left'}
    assert set(predict_inputs(NoisyStereo(), {'left': 1})) == {'left'}


def test_predict_keys_and_accumulator_instances():
    class Video(nn.Module):
        predict_keys = ('left', 'disp_l')

        def predict(self, left, disp_l):
            return {'disp': disp_l.nan_to_num(posinf=0.)}

    depth = DepthMetrics(max_depth=50.)
    r = evaluate(Video(), toy_dataset(2), [depth, 'disparity'])
    assert r['disparity']['epe'] == 0 and r['depth']['images'] == 2
    with pytest.raises(DepthnbInputError, match="'left_next'"):
        predict_inputs(type('V', (), {'predict_keys': ('left', 'left_next')})(), {'left': 1})


def test_depth_on_the_motorcycle_pair_uses_its_calibration():
    "The real pair: depth = f·B/(d + doffs) with Middlebury's doffs, for GT and predicted disparity alike."
    from depthnb.data.datasets import RealPair
    from depthnb.warp_check import MOTORCYCLE_CALIB

    class ShiftedGT(nn.Module):
        predict_keys = ('left', 'disp_l')

        def predict(self, left, disp_l):
            return {'disp': disp_l.nan_to_num(posinf=0.) + 0.5}

    pair = RealPair(factor=4)
    r = evaluate(ShiftedGT(), pair, ['disparity', 'depth'])
    s = pair[0]
    d = s['disp_l'].double().numpy()
    ok = s['disp_l_valid'].numpy() & np.isfinite(d) & (d > 0)
    f, b, doffs = MOTORCYCLE_CALIB['focal'] / 4, MOTORCYCLE_CALIB['baseline'], MOTORCYCLE_CALIB['doffs'] / 4
    g = f * b / (d[ok] + doffs)
    p = f * b / (d[ok] + 0.5 + doffs)
    assert r['disparity']['pixels'] == ok.sum() and r['disparity']['epe'] == pytest.approx(0.5)
    np.testing.assert_allclose(r['depth']['abs_rel'], np.mean(np.abs(g - p) / g), rtol=1e-5)
    np.testing.assert_allclose(r['depth']['rmse'], np.sqrt(np.mean((g - p) ** 2)), rtol=1e-5)


def test_make_metrics_errors():
    assert [type(m) for m in make_metrics(list(METRICS))] == list(METRICS.values())
    with pytest.raises(DepthnbInputError, match="unknown metric 'epe'"):
        make_metrics(['epe'])
    with pytest.raises(DepthnbInputError, match='unique'):
        make_metrics(['disparity', DisparityMetrics()])
    with pytest.raises(DepthnbInputError, match='accumulators'):
        make_metrics([object()])
    with pytest.raises(DepthnbInputError, match='n must be'):
        evaluate(Mono(), toy_dataset(1), n=-1)


def test_library_does_not_import_analysis():
    import subprocess
    import sys
    code = ('import sys, depthnb.evaluation, depthnb.api, depthnb.cli\n'
            "print(sorted(m for m in sys.modules if m.startswith('depthnb.analysis')))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[]'
