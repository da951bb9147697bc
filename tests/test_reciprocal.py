"""Reciprocal (issue 11): eq. 4–8 against hand-computed cases, each stage's loss falls on a fixed batch, the
teachers stay frozen, predict for the mono and the stereo outputs, the stages as engine stages (stage
checkpoints, a stage alone from a teacher checkpoint, exact resume inside stage 3), the CLI."""
import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

import depthnb
from depthnb.core import DepthnbInputError
from depthnb.engine import StageConfig, load_checkpoint
from depthnb.evaluation import predict_inputs
from depthnb.geometry import lr_occlusion, mirror
from depthnb.losses import log_l1
from depthnb.method import method_class
from depthnb.methods.reciprocal import (NETWORKS, OUTPUTS, STAGES, VARIANTS, Reciprocal, distillation_terms,
                                        masked_photometric, oa_fusion, self_supervised_terms, sgbm_disparity)

TINY = dict(max_disp=8, mono_max_disp=0.125, stereo_args={'levels': 3})


@pytest.fixture(scope='module')
def pair():
    "A smooth random texture seen with a 3 px disparity: left x matches right x − 3 (2×3×32×64)."
    gen = torch.Generator().manual_seed(0)
    texture = F.interpolate(torch.rand(2, 3, 12, 24, generator=gen), size=(32, 80), mode='bilinear',
                            align_corners=False)
    return texture[..., 5:69], texture[..., 8:72]


def test_registered():
    assert method_class('reciprocal') is Reciprocal
    assert Reciprocal.name == 'reciprocal'


# ---- eq. 4–8 by hand -----------------------------------------------------------------------------------

def _row(values):
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)


def test_eq4_lr_check_by_hand():
    disp_l, disp_r = torch.full((1, 1, 1, 16), 10.), torch.full((1, 1, 1, 16), 10.)
    disp_r[..., 2] = 9.2                  # |10 − 9.2| = 0.8 < 0.1·19.2 + 0.5, ≥ 0.01·19.2 + 0.5 = 0.692
    disp_r[..., 4] = 3.                   # |10 − 3| = 7: occluded for both
    outside = [1.] * 10                   # x − 10 < 0
    assert lr_occlusion(disp_l, disp_r, 0.1).flatten().tolist() == outside + [0, 0, 0, 0, 1, 0]
    assert lr_occlusion(disp_l, disp_r, 0.01).flatten().tolist() == outside + [0, 0, 1, 0, 1, 0]


def test_eq5_masked_photometric_by_hand():
    disp_l, disp_r = torch.full((1, 1, 1, 16), 10.), torch.full((1, 1, 1, 16), 10.)
    disp_r[..., 2], disp_r[..., 4] = 9.2, 3.
    black = torch.zeros(1, 3, 1, 16)
    ramp = (torch.arange(16.) / 16).view(1, 1, 1, 16).expand(1, 3, 1, 16)
    # γ = 0: |0 − (x − 10)/16| on the visible pixels 10, 11, 13, 15
    loss, occ = masked_photometric(black, ramp, disp_l, disp_r, alpha=0.01, gamma=0.)
    assert loss.item() == pytest.approx((0 + 1 + 3 + 5) / 4 / 16, abs=1e-6)
    loss, _ = masked_photometric(black, ramp, disp_l, disp_r, alpha=0.1, gamma=0.)
    assert loss.item() == pytest.approx((0 + 1 + 2 + 3 + 5) / 5 / 16, abs=1e-6)


def test_eq5_right_view_is_the_mirrored_left_view(pair):
    left, right = pair
    three = torch.full((2, 1, 32, 64), 3.)
    exact = self_supervised_terms(left, right, [three], [three], smooth_weight=0.)['photometric']
    off = self_supervised_terms(left, right, [three + 1], [three + 1], smooth_weight=0.)['photometric']
    assert exact.item() < 2e-3 < 0.01 < off.item()
    left_only, _ = masked_photometric(left, right, three, three)
    right_only, _ = masked_photometric(mirror(right), mirror(left), three, three)
    assert exact.item() == pytest.approx((left_only.item() + right_only.item()) / 2, abs=1e-7)


def test_eq6_eq8_log_l1_by_hand():
    student, teacher, occ = _row([1, 2, 5, 0]), _row([1, 4, 2, 3]), _row([0, 0, 1, 0])
    image = torch.rand(1, 3, 1, 4)
    eq6 = (0 + math.log(3) + math.log(4)) / 3
    eq8 = (0 + math.log(3) + math.log(4) + math.log(4)) / 4
    assert log_l1(student, teacher, occ).item() == pytest.approx(eq6, abs=1e-6)
    masked = distillation_terms([student], teacher, image, occ)['distill']
    assert masked.item() == pytest.approx(eq6, abs=1e-6)
    assert distillation_terms([student], teacher, image)['distill'].item() == pytest.approx(eq8, abs=1e-6)


def test_distillation_rescales_coarse_scales():
    target, image = torch.full((2, 1, 8, 16), 4.), torch.rand(2, 3, 8, 16)
    half = target[..., ::2, ::2] / 2                                  # 4 px at full width = 2 px at half
    assert distillation_terms([target, half], target, image)['distill'].item() == pytest.approx(0, abs=1e-6)
    wrong = distillation_terms([target, half * 2], target, image)['distill'].item()
    assert wrong == pytest.approx(math.log(5) / 2, abs=1e-5)


def test_eq7_oa_fusion_by_hand():
    D, D_star = _row([4, 4, 4]), _row([1, 2, 3])
    assert oa_fusion(D, D_star, _row([0, 1, 0.5])).flatten().tolist() == [4, 2, 3.5]
    assert oa_fusion(D, D_star, torch.tensor([[[[True, False, True]]]])).flatten().tolist() == [1, 4, 3]
    with pytest.raises(DepthnbInputError, match='disp_mono'):
        oa_fusion(D, D_star[..., :2], _row([0, 0, 0]))


def test_sgbm_finds_a_shift():
    gen = torch.Generator().manual_seed(1)
    wide = F.interpolate(torch.rand(1, 3, 16, 40, generator=gen), size=(64, 160), mode='bilinear',
                         align_corners=False)
    disp, valid = sgbm_disparity(wide[..., :128], wide[..., 3:131], num_disparities=16)
    assert disp.shape == (1, 1, 64, 128) and valid.dtype == torch.bool
    assert not valid[..., :16].any() and valid.float().mean() > 0.6
    assert disp[valid].median().item() == pytest.approx(3., abs=0.1)


# ---- the method: stages, teachers, predict ---------------------------------------------------------------

def _train_stage(method, stage, batch, lr, steps=12):
    "The engine's step on a fixed batch for `stage`: only its network trains; the loss of each step."
    student = STAGES[stage]
    for net in NETWORKS:
        getattr(method, net).requires_grad_(net == student)
    method.trained[NETWORKS.index(student)] = True
    opt = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr)
    history = []
    for _ in range(steps):
        method.train()
        loss = sum(method.losses({'street': batch}, stage).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    return history


@pytest.fixture(scope='module')
def pipeline(pair):
    "The four stages trained in turn on the fixed batch, and each stage's loss history."
    left, right = pair
    torch.manual_seed(0)
    method = Reciprocal(**TINY, init_stereo_d='scratch')
    histories = {}
    rates = (('stereonet', 1e-3), ('singlenet', 1e-4), ('stereonet_d', 1e-3), ('singlenet_self', 1e-4))
    for stage, lr in rates:
        histories[stage] = _train_stage(method, stage, {'left': left, 'right': right}, lr)
    return method, histories


@pytest.mark.parametrize('stage', list(STAGES))
def test_each_stage_loss_falls(pipeline, stage):
    _, histories = pipeline
    assert histories[stage][-1] < 0.8 * histories[stage][0], histories[stage]


def test_stereonet_learns_the_shift(pipeline, pair):
    method, _ = pipeline
    assert method.predict(*pair, output='stereonet')['disp'].mean().item() == pytest.approx(3., abs=1.)


def test_loss_terms_are_named(pair):
    method = Reciprocal(**TINY)
    batch = {'street': {'left': pair[0], 'right': pair[1]}}
    assert set(method.losses(batch, 'stereonet')) == {'photometric', 'smooth'}
    assert set(method.losses(batch, StageConfig(name='singlenet'))) == {'distill', 'smooth'}
    assert set(method.losses(batch, 'stereonet_d')) == {'distill', 'smooth'}
    with pytest.raises(DepthnbInputError, match='one stereo source'):
        method.losses({'a': batch['street'], 'b': batch['street']}, 'stereonet')
    with pytest.raises(DepthnbInputError, match='no stage'):
        method.losses(batch, 'stage2')


@pytest.mark.parametrize('stage,teachers', [('singlenet', ('stereonet',)),
                                            ('stereonet_d', ('stereonet', 'singlenet'))])
def test_teachers_are_frozen(pipeline, pair, stage, teachers):
    method, _ = pipeline
    method.zero_grad(set_to_none=True)
    before = {net: {k: v.clone() for k, v in getattr(method, net).state_dict().items()} for net in teachers}
    student = {k: v.clone() for k, v in getattr(method, STAGES[stage]).state_dict().items()}
    _train_stage(method, stage, {'left': pair[0], 'right': pair[1]}, 1e-4, steps=2)
    for net in teachers:
        assert all(p.grad is None for p in getattr(method, net).parameters()), net
        after = getattr(method, net).state_dict()           # weights and batch-norm statistics
        assert all(torch.equal(v, after[k]) for k, v in before[net].items()), net
    after = getattr(method, STAGES[stage]).state_dict()
    assert not all(torch.equal(v, after[k]) for k, v in student.items())


def test_sgm_stage_reads_no_stereonet(pair):
    method = Reciprocal(**TINY, distill_from='sgm', sgbm_disparities=16)
    assert method.teachers_of('singlenet') == ()
    target, occ = method.distillation_target(*pair)
    assert target.shape == occ.shape == (2, 1, 32, 64)
    assert set(occ.unique().tolist()) <= {0., 1.} and occ[..., :16].min() == 1


def test_on_stage_start_guards_and_initialises():
    method = Reciprocal(**TINY)
    with pytest.raises(DepthnbInputError, match='needs a trained stereonet'):
        method.on_stage_start(StageConfig(name='singlenet', train=['singlenet.']), 0)
    with pytest.raises(DepthnbInputError, match='its frozen teacher'):
        method.on_stage_start(StageConfig(name='stereonet_d', train=['singlenet.']), 0)
    with pytest.raises(DepthnbInputError, match='no stage'):
        method.on_stage_start(StageConfig(name='stereo'), 0)
    method.on_stage_start(StageConfig(name='stereonet', train=['stereonet.']), 0)
    method.on_stage_start(StageConfig(name='singlenet', train=['singlenet.']), 1)
    assert not any(p.requires_grad for p in method.stereonet.parameters())
    method.on_stage_start(StageConfig(name='stereonet_d', train=['stereonet_d.']), 2)
    pairs = zip(method.stereonet_d.parameters(), method.stereonet.parameters())
    assert all(torch.equal(a, b) for a, b in pairs)
    with torch.no_grad():
        next(method.stereonet_d.parameters()).add_(1.)
    method.on_stage_start(StageConfig(name='stereonet_d', train=['stereonet_d.']), 2)      # resume inside
    assert torch.equal(next(method.stereonet_d.parameters()), next(method.stereonet.parameters()) + 1)
    assert method.trained.tolist() == [True, True, True]


def test_predict_mono_and_stereo(pipeline):
    method, _ = pipeline
    gen = torch.Generator().manual_seed(3)
    left, right = torch.rand(1, 3, 30, 70, generator=gen), torch.rand(1, 3, 30, 70, generator=gen)
    mono = Reciprocal(**TINY, output='singlenet')
    mono.load_state_dict(method.state_dict())
    assert mono.stereo is False and list(predict_inputs(mono, {'left': left, 'right': right})) == ['left']
    out = mono.predict(left, focal=100., baseline=0.5)
    assert out['disp'].shape == (1, 1, 30, 70) and 0 < out['disp'].min() and out['disp'].max() < 0.125 * 70
    torch.testing.assert_close(out['depth'], 50. / out['disp'], rtol=1e-4, atol=1e-4)
    assert method.stereo is True
    for output in OUTPUTS:
        disp = method.predict(left, None if output == 'singlenet' else right, output=output)['disp']
        assert disp.shape == (1, 1, 30, 70) and torch.isfinite(disp).all(), output
    fused = method.predict(left, right, output='fused')
    expected = oa_fusion(fused['disp_stereo'], fused['disp_mono'], fused['occ'])
    torch.testing.assert_close(fused['disp'], expected)
    with pytest.raises(DepthnbInputError, match='predict\\(left, right\\)'):
        method.predict(left)
    with pytest.raises(DepthnbInputError, match='output must be one of'):
        method.predict(left, right, output='mono')
    assert method.output == 'stereonet_d'


def test_visuals(pipeline, pair):
    method, _ = pipeline
    method.output = 'fused'
    try:
        images = method.visuals({'street': {'left': pair[0], 'right': pair[1]}})
    finally:
        method.output = 'stereonet_d'
    assert set(images) == {'street/left', 'street/disp', 'street/occ'}
    for image in images.values():
        assert image.shape == (3, 32, 64) and 0 <= image.min() and image.max() <= 1


def test_range_in_pixels_is_recorded(pair):
    method = Reciprocal(mono_max_disp=0.125, stereo_args={'levels': 3})
    method.losses({'street': {'left': pair[0], 'right': pair[1]}}, 'stereonet')
    assert method.stereonet.max_disp == method.stereonet_d.max_disp == method.args['max_disp'] == 0.3 * 64
    assert Reciprocal(**TINY).args['max_disp'] == 8


def test_predict_warns_for_an_untrained_network(pair):
    with pytest.warns(UserWarning, match='singlenet was never trained'):
        Reciprocal(**TINY, output='singlenet').predict(pair[0])


def test_default_configs():
    for variant in VARIANTS:
        cfg = Reciprocal.default_config(variant)
        assert cfg['method'] == 'reciprocal'
        for stage in cfg['stages']:
            assert stage['train'] == [f"{STAGES[stage['name']]}."]
    stages = [s['name'] for s in Reciprocal.default_config()['stages']]
    assert stages == ['stereonet', 'singlenet', 'stereonet_d']
    assert Reciprocal.default_config('stereonet_pyramid')['method_args']['encoder'] == 'pyramid'
    assert Reciprocal.default_config('singlenet_sgm')['method_args']['distill_from'] == 'sgm'
    alone = Reciprocal.default_config(stage='singlenet', teacher='runs/x/stage_0_stereonet.pt')
    assert [s['name'] for s in alone['stages']] == ['singlenet']
    assert alone['method_args']['teacher'] == 'runs/x/stage_0_stereonet.pt'
    assert alone['method_args']['output'] == 'singlenet'
    with pytest.raises(DepthnbInputError, match='has the stages'):
        Reciprocal.default_config('stereonet', stage='singlenet')
    with pytest.raises(DepthnbInputError, match='variant must be one of'):
        Reciprocal.default_config('double')
    with pytest.raises(DepthnbInputError, match='distill_from'):
        Reciprocal(distill_from='lidar')


# ---- the stages as engine stages -------------------------------------------------------------------------

def _tiny_config(out, steps=2, **preset):
    cfg = Reciprocal.default_config(**preset)
    cfg['method_args'].update(max_disp=8, stereo_args={'levels': 3})
    cfg['data']['street']['args'].update(size=[32, 96], n=4)
    for stage in cfg['stages']:
        stage.update(steps=steps, milestones=[])
    run = dict(batch_size=2, log_every=1, ckpt_every=1, tensorboard=False, progress=False, out=str(out))
    return cfg | run


@pytest.fixture(scope='module')
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('reciprocal') / 'full'
    return depthnb.train(_tiny_config(out)), out


def test_three_stages_in_one_run(full_run):
    method, out = full_run
    names = sorted(p.name for p in out.glob('stage_*.pt'))
    assert names == ['stage_0_stereonet.pt', 'stage_1_singlenet.pt', 'stage_2_stereonet_d.pt']
    log = [json.loads(line) for line in (out / 'log.jsonl').read_text().splitlines()]
    assert [r['stage'] for r in log] == ['stereonet'] * 2 + ['singlenet'] * 2 + ['stereonet_d'] * 2
    final = load_checkpoint(out)['model']
    for stage_file, net in (('stage_0_stereonet.pt', 'stereonet'), ('stage_1_singlenet.pt', 'singlenet')):
        saved = load_checkpoint(out / stage_file)['model']
        frozen = [k for k in saved if k.split('.')[0] == net]
        assert frozen and all(torch.equal(saved[k], final[k]) for k in frozen), stage_file
    assert final['trained'].tolist() == [True, True, True]


def test_loaded_run_predicts_every_output(full_run):
    method, out = full_run
    loaded = depthnb.load(out, 'cpu')
    assert isinstance(loaded, Reciprocal) and loaded.output == 'stereonet_d'
    gen = torch.Generator().manual_seed(4)
    left, right = torch.rand(1, 3, 30, 70, generator=gen), torch.rand(1, 3, 30, 70, generator=gen)
    torch.testing.assert_close(loaded.predict(left, right)['disp'], method.predict(left, right)['disp'])
    assert loaded.predict(left, output='singlenet')['disp'].shape == (1, 1, 30, 70)
    held_out = depthnb.data.synthetic.SyntheticStereo('street', seed=7, size=(32, 96), n=2)
    mono = depthnb.evaluate(loaded, held_out, ['disparity'], output='singlenet')
    fused = depthnb.evaluate(loaded, held_out, ['disparity'], output='fused')
    assert mono['samples'] == fused['samples'] == 2


def test_a_stage_alone_from_a_teacher_checkpoint(full_run, tmp_path):
    _, out = full_run
    teacher = out / 'stage_0_stereonet.pt'
    cfg = _tiny_config(tmp_path / 'alone', variant='singlenet_distilled', stage='singlenet',
                       teacher=str(teacher))
    student = depthnb.train(cfg)
    saved = load_checkpoint(teacher)['model']
    state = student.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in saved.items() if k.startswith('stereonet.'))
    disp = depthnb.load(tmp_path / 'alone', 'cpu').predict(torch.rand(1, 3, 32, 96))['disp']
    assert disp.shape == (1, 1, 32, 96)
    bad = _tiny_config(tmp_path / 'bad', variant='singlenet_distilled', stage='singlenet')
    with pytest.raises(DepthnbInputError, match='needs a trained stereonet'):
        depthnb.train(bad)


def test_resume_inside_stage_3_is_exact(full_run, tmp_path):
    "prev.pt of the full run is step 5 (inside stage 3): resumed, the run ends with the same weights."
    _, out = full_run
    previous = load_checkpoint(out / 'prev.pt')
    assert (previous['stage'], previous['stage_step']) == (2, 1)
    run = tmp_path / 'resumed'
    run.mkdir()
    shutil.copy(out / 'prev.pt', run / 'last.pt')
    resumed = depthnb.train(_tiny_config(run), resume=run)
    final = load_checkpoint(out)['model']
    for key, value in resumed.state_dict().items():
        assert torch.equal(value.cpu(), final[key]), key


def test_cli_set_picks_variant_and_stage(full_run, tmp_path):
    from depthnb.cli import main
    _, out = full_run
    args = ['train', '--method', 'reciprocal', '--set', 'variant=singlenet_distilled',
            '--set', 'stage=singlenet',
            '--set', f'teacher={out / "stage_0_stereonet.pt"}', '--set', 'method_args.max_disp=8',
            '--set', 'method_args.stereo_args={levels: 3}', '--set', 'data.street.args.size=[32, 96]',
            '--set', 'data.street.args.n=4', '--set', 'stages.0.steps=1', '--set', 'batch_size=2',
            '--set', 'tensorboard=false', '--set', 'progress=false', '--set', f'out={tmp_path / "cli"}']
    assert main(args) == 0
    saved = yaml_load(tmp_path / 'cli' / 'config.yaml')
    assert [s['name'] for s in saved['stages']] == ['singlenet']
    assert saved['method_args']['output'] == 'singlenet'


def yaml_load(path):
    import yaml
    return yaml.safe_load(path.read_text())
