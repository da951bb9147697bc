"""LSIM (issue 12): the mirrored right path, shared Siamese weights, flip post-processing, the loss, the
experiment recipe and the shape of results/lsim.json (its README table: tests/test_readme_tables.py)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from depthnb.core import DepthnbInputError
from depthnb.evaluation import predict_inputs
from depthnb.experiments import lsim as recipe
from depthnb.geometry import mirror
from depthnb.method import method_class
from depthnb.methods.lsim import LSIM, VARIANTS, flip_blend, flip_weights, lr_terms, scale_terms
from depthnb.models.mono import DepthNet

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def pair():
    gen = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 48, 64, generator=gen), torch.rand(2, 3, 48, 64, generator=gen)


def test_registered():
    assert method_class('lsim') is LSIM
    assert LSIM.stereo is False


def test_right_path_is_mirrored_left_path(pair):
    left, right = pair
    torch.manual_seed(0)
    m = LSIM('siamese').eval()
    with torch.no_grad():
        disp_l, disp_r = m.disparities(left, right)
        f_right = m.net(mirror(right))['disp']
    assert len(disp_r) == 4
    for s, d in enumerate(disp_r):
        expected = mirror(0.3 * d.shape[-1] * f_right[s])
        torch.testing.assert_close(d, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('training', [False, True])
def test_symmetric_scene_same_disparity_both_paths(pair, training):
    left, _ = pair
    m = LSIM('siamese').train(training)
    with torch.no_grad():
        disp_l, disp_r = m.disparities(left, mirror(left))
    for d_l, d_r in zip(disp_l, disp_r):
        assert torch.equal(d_r, mirror(d_l))


def test_siamese_branches_share_one_set_of_weights(pair):
    left, right = pair
    m = LSIM('siamese').eval()
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in DepthNet().parameters())
    weight = m.net.encoder.conv1.weight

    def grad(which):
        m.zero_grad()
        disp_l, disp_r = m.disparities(left, right)
        loss = sum(d.mean() for k, ds in (('l', disp_l), ('r', disp_r)) if k in which for d in ds)
        loss.backward()
        return weight.grad.clone()

    g_l, g_r, g_both = grad('l'), grad('r'), grad('lr')
    assert g_l.abs().sum() > 0 and g_r.abs().sum() > 0
    torch.testing.assert_close(g_both, g_l + g_r, rtol=1e-5, atol=1e-7)


class _PerPixel(torch.nn.Module):
    "A mirror-equivariant stand-in for f (1×1 convolution)."
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1)

    def forward(self, x):
        return {'disp': [torch.sigmoid(self.conv(F.avg_pool2d(x, 2 ** s))) for s in range(4)]}


def test_flip_post_processing_of_symmetric_scene_is_identity(pair):
    left, _ = pair
    d = torch.rand(1, 1, 8, 40)
    torch.testing.assert_close(flip_blend(d, d), d)
    plain, post = LSIM('siamese').eval(), LSIM('siamese', post_process=True).eval()
    plain.net = post.net = _PerPixel()
    torch.testing.assert_close(post.predict(left)['disp'], plain.predict(left)['disp'])
    symmetric = 0.5 * (left + mirror(left))                       # a mirror-symmetric image
    real = LSIM('siamese', post_process=True).eval()
    out = real.predict(symmetric)['disp']
    own = real.left_disparities(symmetric)[0]
    w_flip, w_own = flip_weights(64)
    mean = 0.5 * (own + mirror(own))
    torch.testing.assert_close(out, w_own * own + w_flip * mirror(own) + (1 - w_flip - w_own) * mean)


def test_flip_weights_match_monodepth():
    x = np.linspace(0, 1, 30)
    w_flip, w_own = flip_weights(30)
    np.testing.assert_allclose(w_flip.flatten().numpy(), 1 - np.clip(20 * (x - 0.05), 0, 1), atol=1e-6)
    np.testing.assert_allclose(w_own.flatten().numpy(), w_flip.flatten().numpy()[::-1], atol=1e-6)


def test_lr_terms_against_column_shift():
    d_r = torch.randint(0, 5, (1, 1, 4, 20), generator=torch.Generator().manual_seed(1)).float()
    l_term, r_term = lr_terms(torch.full((1, 1, 4, 20), 2.), d_r)
    torch.testing.assert_close(l_term, (2 - d_r[..., :-2]).abs().mean())
    l_term, r_term = lr_terms(torch.full((1, 1, 4, 20), 2.), torch.full((1, 1, 4, 20), 3.))
    assert abs(float(l_term) - 1) < 1e-6 and abs(float(r_term) - 1) < 1e-6


def test_tv_in_units_of_width():
    W = 32
    ramp = torch.arange(W, dtype=torch.float32).view(1, 1, 1, W).expand(1, 1, 16, W) * 0.25
    img = torch.rand(1, 3, 16, W)
    assert abs(float(scale_terms(img, img, ramp, ramp)['tv']) - 2 * 0.25 / W) < 1e-6


@pytest.mark.parametrize('variant', VARIANTS)
def test_losses_fall_on_a_fixed_batch(variant):
    gen = torch.Generator().manual_seed(0)
    texture = F.interpolate(torch.rand(2, 3, 12, 20, generator=gen), size=(48, 80), mode='bilinear',
                            align_corners=False)
    batch = {'street': {'left': texture[..., 5:69], 'right': texture[..., 8:72]}}
    torch.manual_seed(0)
    m = LSIM(variant)
    assert m.net.decoder.outconv['0'][-1].out_channels == (1 if variant.startswith('siamese') else 2)
    opt = torch.optim.Adam(m.parameters(), 1e-4)
    history = []
    for _ in range(15):
        terms = m.losses(batch, None)
        loss = sum(terms.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert set(terms) == {'im', 'tv', 'lr'}
    assert history[-1] < 0.8 * history[0], history


def test_predict_one_image_any_size(pair):
    left, right = pair
    m = LSIM('single').eval()
    out = m.predict(torch.rand(1, 3, 50, 70), focal=100., baseline=0.5)
    assert out['disp'].shape == (1, 1, 50, 70)
    torch.testing.assert_close(out['depth'], 50. / out['disp'])
    assert list(predict_inputs(m, {'left': left, 'right': right})) == ['left']
    with pytest.raises(DepthnbInputError, match='variant must be one of'):
        LSIM('twins')
    with pytest.raises(DepthnbInputError, match='one stereo source'):
        m.losses({'a': {'left': left, 'right': right}, 'b': {'left': left, 'right': right}}, None)


def test_region_errors_hand_count():
    gt = torch.full((2, 1, 4, 20), 10.)
    disp = 60. / gt
    disp[..., :2] = 60. / 11.
    occ = torch.zeros(2, 1, 4, 20)
    occ[..., 10:12] = 1.
    disp[..., 10:12] = 60. / 20.
    K = torch.eye(3).expand(2, 3, 3).clone()
    K[:, 0, 0] = 60.
    acc = recipe.RegionDepthErrors()
    acc.update({'depth_l': gt, 'occ_l': occ, 'K': K, 'baseline': torch.ones(2)}, {'disp': disp})
    res = acc.result()
    assert abs(res['left_border']['abs_rel'] - 0.1) < 1e-6 and res['left_border']['pixels'] == 16
    assert abs(res['occluded']['abs_rel'] - 1.0) < 1e-6 and res['occluded']['a1'] == 0.0
    assert res['other']['abs_rel'] == 0.0


def test_shards_and_collect():
    parts = recipe.shards(VARIANTS, (0, 1, 2), 2)
    assert sorted(sum(parts, [])) == sorted((v, s) for v in VARIANTS for s in (0, 1, 2))
    fake = {(v, s): {'metrics': {'street': {'abs_rel': float(s)}}, 'train_seconds': 1.}
            for v in VARIANTS for s in (0, 1, 2)}
    summary = recipe.collect(fake)['single']['street']['abs_rel']
    assert summary == {'mean': 1.0, 'std': 1.0, 'seeds': [0.0, 1.0, 2.0]}


def _results():
    path = ROOT / 'results' / 'lsim.json'
    if not path.is_file():
        pytest.skip('results/lsim.json not written yet')
    return json.loads(path.read_text())


def test_results_file_shape():
    res = _results()
    assert set(res) >= {'setup', 'variants', 'configs'}
    assert res['setup']['missing'] == []
    assert set(res['variants']) == set(VARIANTS)
    for variant, sets in res['variants'].items():
        for name in recipe.EVAL_SETS:
            assert set(sets[name]) == set(recipe.EIGEN)
            for summary in sets[name].values():
                assert len(summary['seeds']) == len(res['setup']['seeds']) >= 3
                assert abs(summary['mean'] - np.mean(summary['seeds'])) < 1e-9
        assert res['configs'][variant]['method_args']['variant'] == variant
        assert len(sets['train']['seconds']['seeds']) == len(res['setup']['seeds'])
