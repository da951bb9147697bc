"""SGDepth (issue 13): nearest-warped DC masks, Λ on the renderer's ground truth, the threshold θ_Λ and its
ε schedule, GradScale where the heads meet the encoder, falling losses, the epoch hook through the engine
(exact resume), inference."""
import math

import numpy as np
import pytest
import torch

import depthnb
from depthnb.core import DepthnbInputError
from depthnb.engine import load_checkpoint
from engine_toy import Crash   # tests/ is on sys.path (pytest's rootdir-less test folder)
from depthnb.data.synthetic import SEMANTIC, Street, SyntheticStereo, SyntheticVideo
from depthnb.evaluation import predict_inputs
from depthnb.experiments.sgdepth import scene_frames
from depthnb.geometry import pose_vec_to_mat, warp_by_pose
from depthnb.method import method_class
from depthnb.methods.sgdepth import (DC_CLASSES, NUM_CLASSES, VARIANTS, SGDepth, dc_iou, dc_mask,
                                     dc_object_mask, enet_class_weights, epsilon_schedule, mean_over_sources,
                                     threshold_for_fraction, warp_dc_mask)

SIZE = (32, 96)
CLEAN = dict(noise=False, exposure=False, vignetting=False, specular=False)


@pytest.fixture(scope='module')
def samples():
    video = [SyntheticVideo('street', seed=0, size=SIZE, n=4, traffic=3)[i] for i in range(4)]
    city = [SyntheticStereo('city', seed=0, size=SIZE, n=4)[i] for i in range(4)]
    return video, city


@pytest.fixture(scope='module')
def fixed(samples):
    video, city = samples
    collate = torch.utils.data.default_collate
    return {'video': collate(video[:2]), 'city': collate(city[:2])}


def test_registered_and_mono():
    assert method_class('sgdepth') is SGDepth
    assert SGDepth.stereo is False
    assert list(predict_inputs(SGDepth('depth_only'), {'left': 1, 'right': 2})) == ['left']


def test_dc_classes_are_the_renderers_humans_and_vehicles():
    assert {name for name, c in SEMANTIC.items() if c in DC_CLASSES} == {'person', 'car'}
    labels = torch.tensor([[0, 11, 13, 10, 255, 18, 19]])
    assert dc_mask(labels).tolist() == [[False, True, True, False, False, True, False]]
    with pytest.raises(DepthnbInputError, match='integer'):
        dc_mask(labels.float())


@pytest.mark.parametrize('seed', range(4))
def test_nearest_warped_masks_stay_binary(seed):
    gen = torch.Generator().manual_seed(seed)
    b, h, w = 3, 16, 24
    K = torch.tensor([[20., 0, w / 2], [0, 20., h / 2], [0, 0, 1]]).expand(b, 3, 3)
    depth = 1 + 30 * torch.rand(b, 1, h, w, generator=gen)
    T = pose_vec_to_mat(0.15 * torch.randn(b, 6, generator=gen))
    dc_s = torch.rand(b, 1, h, w, generator=gen) > 0.5
    warped, valid = warp_dc_mask(dc_s, depth, T, K)
    assert warped.dtype == torch.bool and valid.dtype == torch.bool
    # the reference: NumPy indexing at the rounded projected position
    coords = warp_by_pose(dc_s.float(), depth, T, K)[2].numpy()
    xs, ys = np.rint(coords[:, 0]).astype(int), np.rint(coords[:, 1]).astype(int)
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    batch = np.broadcast_to(np.arange(b)[:, None, None], xs.shape)
    reference = dc_s.numpy()[batch[inside], 0, ys[inside], xs[inside]]
    got = warped[:, 0].numpy()[inside]
    near_half = np.abs(np.abs(coords[:, 0] - np.floor(coords[:, 0])) - 0.5)[inside] < 1e-4
    assert (got == reference)[~near_half].all()                  # ties at .5 may round either way


def test_nearest_warp_of_an_exact_shift():
    b, h, w, f, depth = 1, 8, 30, 10., 4.
    K = torch.tensor([[f, 0, 15.], [0, f, 4.], [0, 0, 1]])[None]
    T = torch.eye(4)[None].clone()
    T[0, 0, 3] = 3.3 * depth / f                                   # x_s = x_t + 3.3 → nearest: + 3
    dc_s = torch.zeros(b, 1, h, w, dtype=torch.bool)
    dc_s[..., 12:18] = True
    warped, valid = warp_dc_mask(dc_s, torch.full((b, 1, h, w), depth), T, K)
    assert warped[0, 0, 0].nonzero()[:, 0].tolist() == list(range(9, 15))
    assert valid[0, 0, 0].tolist() == [True] * 27 + [False] * 3     # x + 3.3 < 29.5


def test_mu_and_lambda_closed_forms():
    def row(*spans):
        return torch.tensor([any(a <= x < b for a, b in spans) for x in range(40)]).view(1, 1, 1, 40)
    dc_t = row((10, 20))
    for k in (0, 2, 5):
        assert dc_iou(dc_t, row((10 + k, 20 + k))).item() == pytest.approx((10 - k) / (10 + k))
    mu = dc_object_mask(dc_t, [row((15, 25)), row((30, 35))], [torch.ones_like(dc_t), row((0, 32))])
    assert (~mu)[0, 0, 0].nonzero()[:, 0].tolist() == list(range(10, 25)) + [30, 31]
    assert math.isnan(dc_iou(row(), row()).item())
    ious = torch.tensor([[0.2, float('nan')], [0.6, float('nan')]])
    assert mean_over_sources(ious)[0].item() == pytest.approx(0.4)
    assert math.isnan(mean_over_sources(ious)[1].item())


def gt_lambda(frames) -> float:
    dc = dc_mask(frames['semantic'])
    depth, K = frames['depth'][1:2], frames['K'][None]
    ious = [dc_iou(dc[1:2], *warp_dc_mask(dc[k:k + 1], depth, frames['T'][k:k + 1], K)) for k in (0, 2)]
    return float(mean_over_sources(torch.stack(ious))[0])


def test_lambda_is_one_for_a_static_scene_and_falls_with_moving_objects():
    world = Street(seed=11, size=(48, 144), n=8, traffic=3, **CLEAN)
    # the camera and every object standing still: the warped masks are the target's, Λ = 1 exactly
    assert gt_lambda(scene_frames(world, 3, taus=(0., 0., 0.), static=True)) == 1.0
    # a scene of parked cars and standing people seen from the moving camera, and the same scene with its
    # traffic moving (the renderer's ground truth labels, depth and poses)
    static = [gt_lambda(scene_frames(world, i, static=True)) for i in (1, 3, 7)]
    moving = [gt_lambda(scene_frames(world, i)) for i in (1, 3, 7)]
    assert min(static) > 0.75, static
    assert all(m < s - 0.05 for s, m in zip(static, moving)), (static, moving)


@pytest.mark.parametrize('epsilon', [0., 0.05, 0.3, 0.5, 0.77, 1.])
def test_threshold_leaves_a_fraction_epsilon_unmasked(epsilon):
    gen = torch.Generator().manual_seed(1)
    for n in (1, 7, 200):
        lambdas = torch.rand(n, generator=gen)
        theta = threshold_for_fraction(torch.cat((lambdas, torch.tensor([float('nan')]))), epsilon)
        assert int((lambdas >= theta).sum()) == math.ceil(epsilon * n - 1e-9)
    # ties: the fraction is at least ε
    tied = torch.tensor([0.5] * 6 + [0.25] * 4)
    assert (tied >= threshold_for_fraction(tied, epsilon)).float().mean() >= epsilon


def test_epoch_hook_sets_theta_for_the_next_epoch():
    m = SGDepth('full', epochs=5, epsilon_start=2)
    gen = torch.Generator().manual_seed(2)
    thetas = []
    for epoch in range(5):
        values = torch.rand(40, generator=gen)
        m.lambdas = [values[:25], values[25:]]
        m.on_epoch_end('video', epoch)
        eps = epsilon_schedule(epoch + 1, 5, 2)
        assert m.epoch == epoch + 1 and m.epsilon_now() == eps
        assert int((m.previous_lambdas >= m.theta).sum()) == math.ceil(eps * 40 - 1e-9)
        thetas.append(m.theta)
    assert thetas[:1] == [math.inf] and thetas[-1] == -math.inf
    dc = SGDepth('dc_mask')
    dc.lambdas = [torch.rand(10)]
    dc.on_epoch_end('video', 0)
    assert dc.theta == math.inf                                     # every image masked, always


def test_epsilon_schedule():
    assert [epsilon_schedule(e, 40, 30) for e in (0, 29, 30, 35, 39)] == [0., 0., 0.1, 0.6, 1.]
    assert [epsilon_schedule(e, 4, 0) for e in range(4)] == [0.25, 0.5, 0.75, 1.]


def test_variants_have_their_heads_and_grad_scales():
    for variant in VARIANTS:
        m = SGDepth(variant)
        assert (m.net.seg_decoder is None) == (variant == 'depth_only')
        expected = (1., 1.) if variant in ('depth_only', 'multitask') else (0.1, 0.9)
        assert (m.net.seg_grad.scale, m.net.depth_grad.scale) == pytest.approx(expected)
    for bad in (dict(variant='all'), dict(epochs=0), dict(epsilon=2.), dict(grad_scale=0.),
                dict(class_weights=[1.] * 3)):
        with pytest.raises(DepthnbInputError):
            SGDepth(**bad)


def test_gradscale_scales_the_encoder_gradient_of_each_head(fixed):
    """Eq. 6 at the encoder: the segmentation loss reaches it ×λ, the photometric loss ×(1 − λ), compared with
    the unscaled `multitask` network of the same weights; the heads themselves get their whole gradient."""
    torch.manual_seed(0)
    plain, scaled = SGDepth('multitask'), SGDepth('gradscale')
    scaled.load_state_dict(plain.state_dict())
    for term, factor in (('segmentation', 0.1), ('photometric', 0.9)):
        grads = []
        for m in (plain, scaled):
            m.zero_grad()
            m.losses(fixed, None)[term].backward()
            grads.append(m.net.encoder.layer4[-1].conv2.weight.grad.clone())
        torch.testing.assert_close(grads[1], factor * grads[0], rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize('variant', ['depth_only', 'multitask', 'gradscale'])
def test_losses_fall_on_a_fixed_batch(fixed, variant):
    """Adam 3e-4, 12 steps (`full`, whose masking makes the first steps rise, is tested in notebook 44)."""
    torch.manual_seed(0)
    m = SGDepth(variant, epochs=2)
    opt = torch.optim.Adam(m.parameters(), 3e-4)
    history = []
    for _ in range(12):
        terms = m.losses(fixed, None)
        opt.zero_grad()
        sum(terms.values()).backward()
        opt.step()
        history.append({k: v.item() for k, v in terms.items()})
    expected = {'photometric', 'smoothness'} | ({'segmentation'} if variant != 'depth_only' else set())
    assert set(terms) == expected
    last = lambda k: np.mean([h[k] for h in history[-3:]])
    assert last('photometric') < 0.93 * history[0]['photometric'], history
    if variant != 'depth_only':
        assert last('segmentation') < 0.7 * history[0]['segmentation'], history


def test_masked_loss_uses_mu_below_theta(fixed):
    """An image with Λ̄ ≥ θ_Λ keeps every pixel (auto-masking aside), one below θ_Λ loses its DC pixels."""
    m = SGDepth('threshold').eval()
    with torch.no_grad():
        m.losses({'video': fixed['video']}, None)
    lam = m.last['lambda_bar']
    assert m.last['unmasked'].tolist() == [False, False]           # epoch 0: θ = +inf
    m.theta = float(lam.nan_to_num(-1.).min())
    with torch.no_grad():
        m.losses({'video': fixed['video']}, None)
    assert m.last['unmasked'].tolist() == (m.last['lambda_bar'] >= m.theta).tolist()


def test_class_weights_follow_enet():
    w = enet_class_weights(torch.tensor([80, 20, 0]))
    torch.testing.assert_close(w, 1 / torch.log(1.02 + torch.tensor([0.8, 0.2, 0.])))
    m = SGDepth('multitask', class_weights=[1.] * NUM_CLASSES)
    assert m.class_weights.shape == (NUM_CLASSES,)
    assert 'class_weights' not in m.state_dict()


def test_predict_any_size_and_bad_batches(fixed):
    m = SGDepth('full').eval()
    out = m.predict(torch.rand(2, 3, 37, 81))
    assert {k: tuple(v.shape) for k, v in out.items()} == {'disp': (2, 1, 37, 81), 'depth': (2, 1, 37, 81),
                                                           'semantic': (2, NUM_CLASSES, 37, 81)}
    torch.testing.assert_close(out['disp'] * out['depth'], torch.ones_like(out['depth']))
    assert 'semantic' not in SGDepth('depth_only').eval().predict(torch.rand(1, 3, 32, 32))
    with pytest.raises(DepthnbInputError, match="needs 'video'"):
        m.losses({'street': fixed['video']}, None)
    with pytest.raises(DepthnbInputError, match='lacks'):
        m.losses({'video': {'left': fixed['video']['left']}}, None)
    with pytest.raises(DepthnbInputError, match='no semantic'):
        m.losses({'city': {'left': fixed['city']['left']}}, None)
    small = {'left': fixed['city']['left'][..., :64], 'semantic': fixed['city']['semantic'][..., :64]}
    with pytest.raises(DepthnbInputError, match='one size'):
        m.losses({'video': fixed['video'], 'city': small}, None)


class Listed(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_theta_survives_resume_through_the_engine(samples, tmp_path):
    """Through `depthnb.train`: 4 samples in batches of 2 — an epoch every 2 steps, θ_Λ set by the engine's
    epoch hook; a run that crashes at step 5 (its last checkpoint: step 3, inside the second epoch, with the
    first epoch's θ_Λ and the second's first Λ̄) and resumes equals the run of 6 steps straight."""
    video, city = samples
    data = {'video': Listed(video), 'city': Listed(city)}
    stage = {'name': 'threshold', 'steps': 6, 'lr': 1e-4, 'data': ['video', 'city'], 'mix': 'joint'}
    args = {'variant': 'threshold', 'epochs': 3, 'epsilon': 0.5}
    config = lambda out: dict(method='sgdepth', method_args=args, seed=0, data={}, stages=[stage],
                              batch_size=2, log_every=1, ckpt_every=3, tensorboard=False, progress=False,
                              out=str(out))
    straight = depthnb.train(config(tmp_path / 'a'), datasets=data)
    with pytest.raises(KeyboardInterrupt):
        depthnb.train(config(tmp_path / 'b'), datasets=data, callbacks=[Crash(5)])
    saved = load_checkpoint(tmp_path / 'b')
    assert saved['step'] == 3 and saved['model']['_extra_state']['epoch'] == 1
    resumed = depthnb.train(config(tmp_path / 'b'), datasets=data)
    assert straight.epoch == resumed.epoch == 2
    assert math.isfinite(straight.theta) and straight.theta == resumed.theta
    torch.testing.assert_close(straight.previous_lambdas, resumed.previous_lambdas)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        if torch.is_tensor(a):
            torch.testing.assert_close(a, b, msg=name)
    loaded = depthnb.load(tmp_path / 'b', 'cpu')
    assert loaded.theta == resumed.theta and loaded.epoch == 2


def test_init_from_another_run_once_and_not_on_resume(samples, tmp_path):
    """`init`: a `full` run starts from a `depth_only` run's DepthNet and PoseNet (its segmentation head stays
    random); a resumed run keeps its own weights; `depthnb.load` does not need the init run."""
    video, city = samples
    data = {'video': Listed(video), 'city': Listed(city)}
    stage = lambda name, steps: {'name': name, 'steps': steps, 'lr': 1e-3, 'data': ['video', 'city'],
                                 'mix': 'joint'}
    config = lambda out, variant, args, steps: dict(
        method='sgdepth', method_args={'variant': variant, 'epochs': 2} | args, seed=0, data={},
        stages=[stage(variant, steps)], batch_size=2, log_every=1, ckpt_every=1, tensorboard=False,
        progress=False, out=str(out))
    source = depthnb.train(config(tmp_path / 'init', 'depth_only', {}, 2), datasets=data)
    fresh = SGDepth('full', epochs=2, init=str(tmp_path / 'init'))
    random_head = {k: v.clone() for k, v in fresh.net.seg_decoder.state_dict().items()}   # a copy, not views
    copied = fresh.init_from(tmp_path / 'init')
    assert any(k.startswith('pose.') for k in copied) and not any('seg' in k for k in copied)
    torch.testing.assert_close(fresh.pose.state_dict(), source.pose.state_dict())
    torch.testing.assert_close(fresh.net.encoder.state_dict(), source.net.encoder.state_dict())
    torch.testing.assert_close(fresh.net.seg_decoder.state_dict(), random_head)
    with pytest.raises(DepthnbInputError, match='init'):
        SGDepth('full').init_from(tmp_path / 'nothing')
    # through the engine: loaded when training starts, not again when the run resumes
    args = {'init': str(tmp_path / 'init')}
    with pytest.raises(KeyboardInterrupt):
        depthnb.train(config(tmp_path / 'b', 'full', args, 3), datasets=data, callbacks=[Crash(2)])
    after_one = load_checkpoint(tmp_path / 'b')
    assert after_one['step'] == 1 and after_one['model']['_extra_state']['initialised']
    straight = depthnb.train(config(tmp_path / 'a', 'full', args, 3), datasets=data)
    resumed = depthnb.train(config(tmp_path / 'b', 'full', args, 3), datasets=data)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        if torch.is_tensor(a):
            torch.testing.assert_close(a, b, msg=name)
    import shutil
    shutil.rmtree(tmp_path / 'init')
    loaded = depthnb.load(tmp_path / 'b', 'cpu')
    torch.testing.assert_close(loaded.pose.state_dict(), resumed.pose.state_dict())
