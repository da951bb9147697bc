"""DFR: every variant's loss terms go down on a fixed batch (issue 5), the batch contract (source name →
batch), the loss maps the analysis reads, and the experiment script's arguments."""
import importlib.util
from pathlib import Path

import pytest
import torch

from depthnb.core import DepthnbInputError
from depthnb.data.synthetic import SyntheticStereo
from depthnb.engine import StageConfig
from depthnb.losses import masked_mean, photometric_error
from depthnb.methods.dfr import DFR, VARIANTS, feature_maps, photometric_maps

SIZE = (32, 96)
ROOT = Path(__file__).resolve().parents[1]


def _stack(ds, keys):
    return {k: torch.stack([ds[i][k] for i in range(len(ds))]) for k in keys}


@pytest.fixture(scope='module')
def batches():
    opts = dict(size=SIZE, n=2, noise=False, exposure=False, vignetting=False, specular=False)
    labelled = _stack(SyntheticStereo('flying', **opts), ('left', 'right', 'disp_l', 'occ_l'))
    unlabelled = _stack(SyntheticStereo('street', **opts), ('left', 'right'))     # no labels at all
    return {'labelled': labelled}, {'unlabelled': unlabelled}


def _to(batch, device):
    return {name: {k: v.to(device) for k, v in b.items()} for name, b in batch.items()}


def _expected_terms(variant):
    unlabelled = {'semi_ph': {'ph', 'smooth'}, 'semi_dfr': {'dfr', 'smooth'}}
    return {'epe', 'occ'} | unlabelled.get(variant, set())


@pytest.mark.parametrize('variant', VARIANTS)
def test_losses_go_down_on_a_fixed_batch(variant, batches, device):
    torch.manual_seed(0)
    m = DFR(variant, width=8).to(device).train()
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    lab, unl = (_to(b, device) for b in batches)
    stage, hist = StageConfig(), []
    for step in range(60):
        for b in ((lab,) if variant == 'supervised' else (lab, unl)):      # mix='alternate': a source a step
            terms = m.losses(b, stage)
            opt.zero_grad()
            sum(terms.values()).backward()
            opt.step()
            hist.append({k: float(v.detach()) for k, v in terms.items()})
    for k in hist[0]:
        series = [h[k] for h in hist if k in h]
        first, last = sum(series[:3]) / 3, sum(series[-5:]) / 5
        assert last < 0.8 * first, f'{variant}: loss term {k} went from {first:.4f} to {last:.4f}'
    assert set().union(*hist) == _expected_terms(variant)


def test_joint_batch_gives_the_terms_of_each_source(batches):
    "mix='joint': one dict with both sources gives the union of the terms each source gives alone."
    lab, unl = batches
    torch.manual_seed(0)
    m = DFR('semi_dfr', width=8).eval()
    with torch.no_grad():
        joint = m.losses(lab | unl, None)
        alone = m.losses(lab, None) | m.losses(unl, None)
    assert set(joint) == _expected_terms('semi_dfr')
    for k in joint:
        torch.testing.assert_close(joint[k], alone[k])


def test_batch_contract_errors(batches):
    lab, unl = batches
    m = DFR('semi_ph', width=8)
    with pytest.raises(DepthnbInputError, match='source dataset names'):
        m.losses(lab['labelled'] | {'source': 'labelled'}, None)            # the old flat batch
    with pytest.raises(DepthnbInputError, match="variant 'supervised' got a batch from 'unlabelled'"):
        DFR('supervised', width=8).losses(unl, None)
    with pytest.raises(DepthnbInputError, match="'street' has no 'disp_l'"):
        DFR('semi_ph', width=8, labelled_source='street').losses({'street': unl['unlabelled']}, None)


def test_visuals_name_sources_and_hide_unlabelled_gt(batches):
    lab, unl = batches
    labels = lab['labelled']['disp_l']
    street = {'unlabelled': dict(unl['unlabelled'], disp_l=labels)}         # labels present, never drawn
    vis = DFR('semi_dfr', width=8).eval().visuals(lab | street)
    assert {'labelled/disp/gt', 'labelled/error', 'labelled/disp/pred'} <= set(vis)
    unlabelled = {k for k in vis if k.startswith('unlabelled/')}
    assert unlabelled == {'unlabelled/left', 'unlabelled/disp/pred', 'unlabelled/occ/pred'}
    assert all(v.shape == (3, *SIZE) for v in vis.values())


@pytest.mark.parametrize('variant', ['semi_ph', 'semi_dfr'])
def test_reconstruction_is_the_mean_of_its_maps(variant, batches):
    "reconstruction() = mean over reconstruction_maps of Σ error·(1 − M̂)·valid / Σ (1 − M̂)·valid."
    lab, _ = batches
    b = lab['labelled']
    torch.manual_seed(0)
    m = DFR(variant, width=8).eval()
    with torch.no_grad():
        out = m.net(b['left'], b['right'])
        maps = m.reconstruction_maps(out, b['left'], b['right'])
        keep = 1 - torch.sigmoid(out['occ'][0])
        expected = []
        for x in maps:
            w = torch.nn.functional.adaptive_avg_pool2d(keep, x['error'].shape[-2:]) * x['valid']
            expected.append((x['error'] * w).sum() / w.sum())
        loss = m.reconstruction(out, b['left'], b['right'])
        torch.testing.assert_close(loss, sum(expected) / len(expected))
    levels = out['disp'] if variant == 'semi_ph' else out['features_l']
    assert [x['error'].shape[-2:] for x in maps] == [t.shape[-2:] for t in levels]


def test_maps_at_an_integer_shift():
    "Against plain column slicing: the PH map at full resolution and the feature map at 3 px."
    gen = torch.Generator().manual_seed(0)
    left, right = torch.rand(2, 1, 3, 12, 40, generator=gen)
    disp = torch.full((1, 1, 12, 40), 3.)
    (err, valid), = photometric_maps(left, right, [disp], alpha=0.)          # alpha=0: L1 only
    torch.testing.assert_close(err[..., 3:], (left[..., 3:] - right[..., :-3]).abs().mean(1, keepdim=True))
    assert not valid[..., :3].any() and valid[..., 3:].all()
    fl, fr = torch.rand(2, 1, 6, 12, 40, generator=gen)
    (err, _), = feature_maps([fl], [fr], disp, 'l1')
    torch.testing.assert_close(err[..., 3:], (fl[..., 3:] - fr[..., :-3]).abs().mean(1, keepdim=True))
    (ssim_err, _), = photometric_maps(left, right, [disp])
    shifted = torch.cat((right[..., :1].expand(-1, -1, -1, 3), right[..., :-3]), -1)
    torch.testing.assert_close(ssim_err[..., 2:-1, 5:-1], photometric_error(left, shifted)[..., 2:-1, 5:-1])
    assert float(masked_mean(ssim_err, valid)) > 0


def _script():
    spec = importlib.util.spec_from_file_location('dfr_script', ROOT / 'experiments' / 'dfr.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_experiment_script_forwards_its_arguments(monkeypatch):
    "experiments/dfr.py is a thin wrapper: its flags reach depthnb.experiments.dfr.run_experiment."
    import depthnb.experiments.dfr as recipe
    calls = []
    monkeypatch.setattr(recipe, 'run_experiment', lambda **kw: calls.append(kw) or {'variants': {}})
    _script().main(['--variants', 'semi_ph', '--steps', '7', '--size', '32', '96', '--seed', '2',
                    '--out', 'x.json', '--workers', '0'])
    kw, = calls
    assert kw['variants'] == ['semi_ph'] and kw['steps'] == 7 and kw['size'] == (32, 96) and kw['seed'] == 2
    assert kw['out'] == 'x.json' and kw['workers'] == 0 and kw['cache'] == 'data_cache'
    assert kw['command'].startswith('python experiments/dfr.py --variants semi_ph')
    with pytest.raises(SystemExit):
        _script().main(['--variants', 'semi'])
