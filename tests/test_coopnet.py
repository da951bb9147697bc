"""CoopNet (issue 14): P² quantiles, Δ and the quantile split, the flow weights, the burn-in, the losses, the Δ
histogram callback and the experiment recipe."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import depthnb
from depthnb.analysis.delta import DeltaHistograms, gt_delta, outside_fraction, read_delta_log, split_by_motion
from depthnb.core import DepthnbInputError
from depthnb.engine import load_checkpoint
from engine_toy import Crash   # tests/ is on sys.path (pytest's rootdir-less test folder)
from depthnb.data.synthetic import Street
from depthnb.evaluation import predict_inputs
from depthnb.experiments import coopnet as recipe
from depthnb.method import method_class
from depthnb.methods.coopnet import (VARIANTS, CoopNet, P2Quantile, QuantileModule, at_best_source, branch_errors,
                                     delta, delta_flow, epipolar_residual, flow_weights, forward_backward,
                                     geometric_consistency, in_interval)
from depthnb.geometry import pixel_grid, pose_vec_to_mat, warp_by_pose

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(scales=2, quantile_samples=256,
            flow_args={'levels': 4, 'finest': 2, 'widths': (8, 16, 24, 32), 'est_widths': (16, 8), 'radius': 2})


def stack(samples):
    return {k: torch.stack([s[k] for s in samples]) for k, v in samples[0].items() if torch.is_tensor(v)}


@pytest.fixture(scope='module')
def video():
    "Three Street video samples with denser traffic (moving pixels in each) at 48×144, and their batch."
    street = Street(seed=0, size=(48, 144), video=True, n=4, traffic=3)
    return street, stack([street[i] for i in range(3)])


# ---- P² --------------------------------------------------------------------------------------------------
def _bimodal(rng, n):
    return np.where(rng.random(n) < 0.7, rng.normal(0, 1, n), rng.normal(5, 0.5, n))


@pytest.mark.parametrize('name', ['normal', 'lognormal', 'bimodal'])
def test_p2_within_one_percent_of_the_spread(name):
    rng = np.random.default_rng(1)
    n = 100_000
    x = {'normal': lambda: rng.normal(0, 1, n), 'lognormal': lambda: rng.lognormal(0, 1, n),
         'bimodal': lambda: _bimodal(rng, n)}[name]()
    spread = np.quantile(x, 0.99) - np.quantile(x, 0.01)
    for q in (0.1, 0.15, 0.25, 0.35, 0.5, 0.65, 0.75, 0.85, 0.9):
        estimate = P2Quantile(q).update(torch.from_numpy(x)).value
        assert abs(estimate - np.quantile(x, q)) < 0.01 * spread, (name, q, estimate, np.quantile(x, q))


def test_p2_the_papers_example():
    "Jain & Chlamtac's 20 observations; the values independent implementations of P² agree on."
    x = [0.02, 0.5, 0.74, 3.39, 0.83, 22.37, 10.15, 15.43, 38.62, 15.92, 34.60, 10.28, 1.47, 0.40, 0.05, 11.39,
         0.27, 0.42, 0.09, 11.37]
    p = P2Quantile(0.5).update(np.array(x))
    assert p.positions == [1, 6, 10, 16, 20]
    np.testing.assert_allclose(p.desired, [1, 5.75, 10.5, 15.25, 20])
    assert p.value == pytest.approx(4.2462394088036435, abs=1e-12)
    assert P2Quantile(0.75).update(x).value == pytest.approx(17.765707208697677, abs=1e-12)
    assert P2Quantile(0.25).update(x).value == pytest.approx(0.3871122398589066, abs=1e-12)


def test_p2_in_pieces_equals_at_once_and_skips_non_finite():
    x = np.random.default_rng(0).normal(size=1000)
    whole = P2Quantile(0.3).update(x)
    pieces = P2Quantile(0.3)
    for part in np.array_split(x, 7):
        pieces.update(list(part) + [math.nan, math.inf])
    assert pieces.state() == whole.state()
    assert P2Quantile.from_state(whole.state()).value == whole.value
    assert math.isnan(P2Quantile(0.5).value)
    assert P2Quantile(0.5).update([5., 1., 3.]).value == 3.
    with pytest.raises(DepthnbInputError, match='q must be'):
        P2Quantile(-0.1)


def test_quantile_module_uses_the_previous_epoch():
    module = QuantileModule({'delta': (0.35, 0.65), 'flow_x': (0.25, 0.75)}, samples=1000)
    torch.manual_seed(0)
    for _ in range(10):
        module.observe('delta', torch.randn(2, 1, 40, 40) + 3)
    assert math.isnan(module.quantile('delta', 0.65))
    assert module.running_quantile('delta', 0.65) == pytest.approx(3.3853, abs=0.05)
    module.end_epoch()
    assert module.epochs == 1
    assert module.quantile('delta', 0.65) == pytest.approx(3.3853, abs=0.05)
    assert module.running['delta'][0.65].count == 0                     # the new epoch starts afresh
    assert math.isnan(module.quantile('flow_x', 0.25))                  # never observed
    other = QuantileModule({'delta': (0.65, 0.35), 'flow_x': (0.75, 0.25)})
    other.load(module.state())
    assert other.state() == module.state()
    with pytest.raises(DepthnbInputError, match='does not fit'):
        QuantileModule({'delta': (0.4, 0.6)}).load(module.state())


# ---- Δ, the split, the weights ------------------------------------------------------------------------------
def test_flow_weights_identity_of_eq_11():
    "Each group's weights sum to |P|: mean(w·Φ) = mean of Φ over the tails + mean over the rest."
    gen = torch.Generator().manual_seed(3)
    d = torch.randn(3, 1, 20, 30, generator=gen, dtype=torch.float64)
    phi = torch.rand(3, 1, 20, 30, generator=gen, dtype=torch.float64)
    lo, hi = float(d.quantile(0.15)), float(d.quantile(0.85))
    w = flow_weights(d, lo, hi)
    tails = (d < lo) | (d > hi)
    total = d.numel()
    assert float(w[tails].sum()) == pytest.approx(total)
    assert float(w[~tails].sum()) == pytest.approx(total)
    assert float((w * phi).mean()) == pytest.approx(float(phi[tails].mean() + phi[~tails].mean()))
    assert float(w[tails].min()) == float(w[tails].max()) == pytest.approx(total / int(tails.sum()))
    assert torch.equal(flow_weights(d, -100., 100.), torch.ones_like(d))     # no tails: the plain mean


def test_delta_flow_and_intervals():
    a = torch.tensor([[[[3.]], [[4.]]]])
    assert torch.allclose(delta_flow(a, a), torch.zeros_like(a))
    assert torch.allclose(delta_flow(a, -a), a / 5, atol=1e-6)             # (2a) / (5 + 5)
    assert torch.equal(delta_flow(torch.zeros_like(a), torch.zeros_like(a)), torch.zeros_like(a))
    assert in_interval(torch.tensor([0., 1., 2., math.nan]), 0., 1.).tolist() == [True, True, False, False]
    errors = torch.tensor([1., 0.]).view(2, 1, 1, 1, 1)
    values = torch.tensor([10., 20.]).view(2, 1, 1, 1, 1)
    assert float(at_best_source(errors, values)) == 20.


def test_delta_from_ground_truth_is_zero_on_static_and_positive_on_moving_pixels(video):
    _, b = video
    d, d_flow = gt_delta(b)
    moving = b['moving'].bool()
    assert 0.02 < float(moving.float().mean()) < 0.5
    static = ~(F.max_pool2d(moving.float(), 7, 1, 3) > 0)                # 3 px or more from a moving object
    static_max = float(d[static].abs().max())
    assert static_max < 1e-3
    assert float(d_flow.permute(1, 0, 2, 3)[:, static[:, 0]].abs().max()) < 1e-3
    on_moving = d[moving]
    assert float(on_moving.mean()) > 0.02 and float(on_moving.mean()) > 100 * static_max
    assert float((on_moving > 1e-3).float().mean()) > 0.5


def test_branch_errors_against_warp_by_pose(video):
    _, b = video
    sources = torch.stack([b['left_prev'], b['left_next']])
    poses = torch.stack([b['T_prev'], b['T_next']])
    flows = torch.stack([b['flow_prev'], b['flow_next']])
    e = branch_errors(b['left'], sources, b['depth_l'], poses, flows, b['K'])
    assert e['rigid'].shape == (2, 3, 1, 48, 144) and e['rigid_flow'].shape == (2, 3, 2, 48, 144)
    _, _, coords = warp_by_pose(b['left_next'], b['depth_l'], b['T_next'], b['K'])
    torch.testing.assert_close(e['rigid_flow'][1], coords - pixel_grid(48, 144))
    static = ~b['moving'].bool()
    torch.testing.assert_close(e['rigid_flow'][1].permute(1, 0, 2, 3)[:, static[:, 0]],
                               b['rigid_flow_next'].permute(1, 0, 2, 3)[:, static[:, 0]], atol=2e-3, rtol=0)
    d = delta(e['rigid'], e['flow'])
    torch.testing.assert_close(d, e['rigid'].min(0).values - e['flow'].min(0).values)


def test_subsidiary_losses_closed_forms():
    gen = torch.Generator().manual_seed(0)
    K = torch.tensor([[[20., 0, 7.5], [0, 20., 5.5], [0, 0, 1]]])
    T = pose_vec_to_mat(torch.tensor([[0.01, -0.02, 0.005, 0.1, -0.05, 0.3]]))
    depth = 4 + torch.rand(1, 1, 12, 16, generator=gen)
    img = torch.rand(1, 3, 12, 16, generator=gen)
    _, _, coords = warp_by_pose(img, depth, T, K)
    flow = coords - pixel_grid(12, 16)
    assert float(epipolar_residual(flow, T, K).max()) < 1e-5
    diff, valid = geometric_consistency(torch.full_like(depth, 10.), torch.full_like(depth, 12.),
                                        torch.eye(4)[None], K)
    assert torch.allclose(diff[valid], torch.full_like(diff[valid], 2 / 22))
    residual, visible = forward_backward(torch.full((1, 2, 12, 16), 1.5), torch.full((1, 2, 12, 16), -1.5))
    assert float(residual[visible].abs().max()) < 1e-6 and bool(visible[..., 2:-2, 2:-2].all())


# ---- the method ----------------------------------------------------------------------------------------------
def test_registered_and_bad_arguments():
    assert method_class('coopnet') is CoopNet
    assert CoopNet.stereo is False and CoopNet.predict_keys == ('left', 'left_prev', 'left_next')
    with pytest.raises(DepthnbInputError, match='variant must be one of'):
        CoopNet('glnet')
    with pytest.raises(DepthnbInputError, match='eta must be in'):
        CoopNet(eta=0.6)
    with pytest.raises(DepthnbInputError, match='burn_in must be'):
        CoopNet(burn_in=-1)
    with pytest.raises(DepthnbInputError, match='video batches'):
        CoopNet(**TINY).losses({'s': {'left': torch.rand(1, 3, 64, 64)}}, None)


def test_split_is_empty_during_burn_in(video):
    _, b = video
    batch = {'street': b}
    torch.manual_seed(0)
    m = CoopNet('coopnet', burn_in=2, **TINY)
    base = CoopNet('baseline', **TINY)
    base.load_state_dict(m.state_dict())
    for epoch in range(2):
        terms, base_terms = m.losses(batch, None), base.losses(batch, None)
        assert not m.split_active and m.last['mask'] is None and m.last['weights'] is None
        assert set(terms) == set(base_terms)
        torch.testing.assert_close(terms['flow'], base_terms['flow'])
        m.on_epoch_end('street', epoch)
    assert m.split_active
    m.losses(batch, None)
    mask, weights = m.last['mask'], m.last['weights']
    lo, hi = m.split_bounds()['v_eta']
    v_eta = in_interval(m.last['delta'], lo, hi)
    assert bool((mask <= v_eta).all()) and 0 < float(mask.float().mean()) < float(v_eta.float().mean()) < 0.6
    assert len(weights.unique()) == 2
    assert not CoopNet('adaptive_min', burn_in=0, **TINY).split_active    # only the coopnet variant splits


def test_burn_in_trains_depth_and_pose_with_auto_masking(video):
    """§4.4: during the burn-in the pair trains with monodepth2's loss. A camera at rest (the three frames one
    image): every unwarped source matches exactly, every pixel is auto-masked and the rigid term is 0; the
    `baseline` term is not, and the flow terms agree."""
    _, b = video
    still = {'street': b | {'left_prev': b['left'], 'left_next': b['left']}}
    torch.manual_seed(0)
    m = CoopNet('coopnet', burn_in=1, **TINY)
    base = CoopNet('baseline', **TINY)
    base.load_state_dict(m.state_dict())
    with torch.no_grad():
        terms, base_terms = m.losses(still, None), base.losses(still, None)
    assert m.burning_in and float(terms['rigid']) == 0. and float(base_terms['rigid']) > 0.
    torch.testing.assert_close(terms['flow'], base_terms['flow'])
    m.on_epoch_end('street', 0)
    with torch.no_grad():
        assert not m.burning_in and float(m.losses(still, None)['rigid']) > 0.     # the split: no auto-masking


def test_quantiles_travel_with_the_state_dict(video):
    _, b = video
    m = CoopNet('coopnet', burn_in=1, **TINY)
    m.losses({'street': b}, None)
    m.on_epoch_end('street', 0)
    other = CoopNet('coopnet', burn_in=1, **TINY)
    other.load_state_dict(m.state_dict())
    assert other.split_active and other.split_bounds() == m.split_bounds()


@pytest.mark.parametrize('variant', VARIANTS)
def test_losses_fall_on_a_fixed_batch(video, variant):
    _, b = video
    batch = {'street': {k: v[:2] for k, v in b.items()}}
    torch.manual_seed(0)
    m = CoopNet(variant, burn_in=1, **TINY)
    if variant == 'coopnet':
        m.losses(batch, None)
        m.on_epoch_end('street', 0)
    opt = torch.optim.Adam(m.parameters(), 3e-4)
    history = []
    for _ in range(8):
        terms = m.losses(batch, None)
        loss = sum(terms.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    expected = {'adaptive'} if variant == 'adaptive_min' else {'rigid', 'flow'}
    assert expected <= set(terms)
    assert history[-1] < 0.9 * history[0], history


def test_gradients_reach_only_their_branch(video):
    "`rigid` trains depth and pose only, `flow` the flow network only."
    _, b = video
    m = CoopNet('baseline', smoothness=0., consistency=0., fwd_bwd=0., epipolar=0., variance=0., **TINY)
    terms = m.losses({'street': b}, None)
    for term, trained, untouched in (('rigid', ('depth', 'pose'), 'flow'), ('flow', ('flow',), 'depth')):
        m.zero_grad()
        terms[term].backward(retain_graph=True)
        for prefix in trained:
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(m, prefix).parameters())
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in getattr(m, untouched).parameters())


def test_predict_and_evaluate(video):
    street, b = video
    m = CoopNet(**TINY).eval()
    out = m.predict(b['left'][:1])
    assert set(out) == {'disp', 'depth'} and out['depth'].shape == (1, 1, 48, 144)
    torch.testing.assert_close(out['disp'] * out['depth'], torch.ones_like(out['depth']))
    out = m.predict(b['left'], b['left_prev'], b['left_next'])
    assert out['T_next'].shape == (3, 4, 4) and out['flow'].shape == (3, 2, 48, 144)
    assert set(predict_inputs(m, b)) == {'left', 'left_prev', 'left_next'}
    with pytest.raises(DepthnbInputError, match='left_next'):
        m.predict(b['left'], None, b['left_next'][..., :100])
    r = recipe.evaluate_run(m, street, n=2, batch_size=2)
    assert set(r) == {'street', 'street_moving'}
    assert {'abs_rel', 'sq_rel', 'rmse', 'a1', 'flow_epe', 'ate'} <= set(r['street'])
    assert {'abs_rel', 'flow_epe'} <= set(r['street_moving'])


def test_train_with_the_engine_and_the_delta_callback(tmp_path):
    "The engine's epoch hook ends the quantile epochs; the callback logs Δ; the run reloads with its quantiles."
    cfg = dict(method='coopnet', method_args={'variant': 'coopnet', 'burn_in': 1, **TINY}, seed=0,
               data={'street': {'type': 'SyntheticVideo',
                                'args': {'world': 'street', 'size': [48, 144], 'n': 4, 'traffic': 3}}},
               stages=[{'name': 'coopnet', 'steps': 3, 'lr': 1e-4, 'data': ['street']}],
               batch_size=2, log_every=1, ckpt_every=3, progress=False, out=str(tmp_path))
    trained = depthnb.train(cfg, callbacks=[DeltaHistograms(every=1)])
    assert trained.quantiles.epochs == 1                                 # epoch 0 ended before step 3
    log = read_delta_log(tmp_path)
    assert [r['split_active'] for r in log] == [False, False, True]
    assert 0 <= log[-1]['moving_outside_v'] <= 1 and sum(log[0]['counts']['moving']) == log[0]['moving_pixels']
    assert (tmp_path / 'tb').is_dir()
    reloaded = depthnb.load(tmp_path, 'cpu')
    assert reloaded.quantiles.state() == trained.quantiles.state()


def test_init_from_an_sgdepth_run_once_and_not_on_resume(tmp_path):
    """`init`: DepthNet and PoseNet start from an SGDepth run's (`net.*` → `depth.*`), the FlowNet stays as it
    was; through the engine `init` is loaded when training starts, not again when a run resumes."""
    street = {'type': 'SyntheticVideo', 'args': {'world': 'street', 'size': [48, 144], 'n': 4, 'traffic': 3}}
    sgdepth = dict(method='sgdepth', method_args={'variant': 'depth_only', 'epochs': 2}, seed=0,
                   data={'video': street}, stages=[{'name': 'depth', 'steps': 2, 'lr': 1e-3, 'data': ['video']}],
                   batch_size=2, log_every=1, ckpt_every=2, tensorboard=False, progress=False,
                   out=str(tmp_path / 'init'))
    source = depthnb.train(sgdepth)
    fresh = CoopNet('baseline', **TINY)
    flow_before = {k: v.clone() for k, v in fresh.flow.state_dict().items()}
    copied = fresh.init_from(tmp_path / 'init')
    assert any(k.startswith('pose.') for k in copied) and not any(k.startswith('flow.') for k in copied)
    torch.testing.assert_close(fresh.depth.encoder.state_dict(), source.net.encoder.state_dict())
    torch.testing.assert_close(fresh.pose.state_dict(), source.pose.state_dict())
    torch.testing.assert_close(fresh.flow.state_dict(), flow_before)
    with pytest.raises(DepthnbInputError, match='init'):
        CoopNet(**TINY).init_from(tmp_path / 'nothing')
    config = lambda out: dict(method='coopnet', seed=0, data={'street': street},
                              method_args={'variant': 'coopnet', 'burn_in': 1, 'init': str(tmp_path / 'init'),
                                           **TINY},
                              stages=[{'name': 'coopnet', 'steps': 3, 'lr': 1e-3, 'data': ['street']}],
                              batch_size=2, log_every=1, ckpt_every=1, tensorboard=False, progress=False,
                              out=str(out))
    with pytest.raises(KeyboardInterrupt):
        depthnb.train(config(tmp_path / 'b'), callbacks=[Crash(2)])
    after_one = load_checkpoint(tmp_path / 'b')
    assert after_one['step'] == 1 and after_one['model']['_extra_state']['initialised']
    straight = depthnb.train(config(tmp_path / 'a'))
    resumed = depthnb.train(config(tmp_path / 'b'))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        if torch.is_tensor(a):
            torch.testing.assert_close(a, b, msg=name)
    later = CoopNet('coopnet', **TINY)                              # from a CoopNet run: its FlowNet too
    assert any(k.startswith('flow.') for k in later.init_from(tmp_path / 'a'))
    torch.testing.assert_close(later.flow.state_dict(), straight.flow.state_dict())


def test_split_by_motion_and_outside_fraction():
    d = torch.tensor([-1., 0., 0.1, 2.], dtype=torch.float64).view(1, 1, 2, 2)
    moving = torch.tensor([True, False, False, True]).view(1, 1, 2, 2)
    groups = split_by_motion(d, moving)
    assert groups['moving'].tolist() == [-1., 2.] and groups['rigid'].tolist() == [0., 0.1]
    assert outside_fraction(groups['moving'], -0.5, 0.5) == 1.0
    assert outside_fraction(groups['all'], -0.5, 0.5) == 0.5
    assert math.isnan(outside_fraction(groups['all'], math.nan, 0.5))


def test_method_module_imports_no_analysis():
    code = "import sys, depthnb.methods.coopnet; print(any(m.startswith('depthnb.analysis') for m in sys.modules))"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.strip() == 'False', r.stderr


# ---- the recipe ----------------------------------------------------------------------------------------------
def test_recipe_config():
    cfg = recipe.experiment_config('coopnet', '/tmp/x', seed=1, burn_in=3)
    assert cfg['method_args']['burn_in'] == 3 and cfg['seed'] == 1 and cfg['tensorboard'] is True
    assert cfg['data']['street']['type'] == 'SyntheticVideo' and cfg['ckpt_every'] == 60
    assert all(cfg['method_args'][k] == 0 for k in ('consistency', 'fwd_bwd', 'epipolar', 'variance'))
    assert 'init' not in cfg['method_args']
    assert recipe.experiment_config('coopnet', '/tmp/x', init='/r/init')['method_args']['init'] == '/r/init'
    assert recipe.video_cache_path(240, 0, (64, 192)).name == 'street-traffic3-video-64x192-s0-n240'
    with pytest.raises(DepthnbInputError, match='not a finished run'):
        recipe.run_experiment(init='/nonexistent/init', render_only=True)


def test_script_options():
    sys.path.insert(0, str(ROOT / 'experiments'))
    try:
        import coopnet as script
    finally:
        sys.path.pop(0)
    a = script.parse_args(['--variants', 'coopnet', 'baseline', '--seeds', '1', '--shard', '1', '2',
                           '--render-only'])
    assert a.variants == ['coopnet', 'baseline'] and a.seeds == [1] and a.shard == [1, 2] and a.render_only
    assert (a.steps, a.batch_size, a.n_train, a.burn_in, a.traffic) == (400, 4, 240, 1, 3.0)
    assert (a.pretrain_steps, a.pretrain_lr) == (recipe.PRETRAIN_STEPS, recipe.PRETRAIN_LR)
    assert a.init == 'results/sgdepth/runs/init' and script.parse_args(['--init', 'none']).init == 'none'


def test_quantiles_averaged_over_processes(tmp_path, video):
    "Under a process group, the epoch's quantiles are all-reduced (one process here: unchanged, but it runs)."
    import torch.distributed as dist
    _, b = video
    m = CoopNet('coopnet', burn_in=1, **TINY)
    m.losses({'street': b}, None)
    expected = {name: est.value for name, est in m.quantiles.running['delta'].items()}
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0, world_size=1)
    try:
        m.on_epoch_end('street', 0)
    finally:
        dist.destroy_process_group()
    assert {q: m.quantiles.quantile('delta', q) for q in expected} == pytest.approx(expected)


def test_default_config_is_a_valid_config():
    from depthnb.engine import as_config
    cfg = as_config(CoopNet.default_config('adaptive_min'))
    assert cfg.method == 'coopnet' and cfg.method_args == {'variant': 'adaptive_min'}
    assert cfg.data['street'].type == 'SyntheticVideo' and cfg.stages[0].milestones == [20_000]


def test_reprojection_stays_in_float32_under_autocast(video):
    "Under AMP (bf16 here, on the CPU) the warps' positions and Δ stay float32, equal to those without it."
    _, b = video
    m = CoopNet('coopnet', burn_in=1, **TINY)
    target, sources, K = m.frames(b)
    with torch.no_grad():
        nets = m.run_networks(target, sources)
        plain = m.scale_errors(target, sources, K, nets, 0)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            amp = m.scale_errors(target, sources, K, nets, 0)
    assert amp['rigid_flow'].dtype == torch.float32
    torch.testing.assert_close(amp['rigid_flow'], plain['rigid_flow'])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        terms = m.losses({'street': b}, None)
    assert all(torch.isfinite(v) for v in terms.values()) and m.last['delta'].dtype == torch.float32
