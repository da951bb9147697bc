"""DFR: every variant's loss terms go down on a fixed batch (issue 5), and the unlabelled loss prefers the truth."""
import pytest
import torch

from depthnb.data.synthetic import SyntheticStereo
from depthnb.methods.dfr import DFR, VARIANTS
from depthnb.engine import StageConfig

SIZE = (32, 96)


@pytest.fixture(scope='module')
def batches():
    opts = dict(size=SIZE, n=2, noise=False, exposure=False, vignetting=False, specular=False)
    stack = lambda ds, keys: {k: torch.stack([ds[i][k] for i in range(len(ds))]) for k in keys}
    lab = stack(SyntheticStereo('flying', **opts), ('left', 'right', 'disp_l', 'occ_l')) | {'source': 'labelled'}
    unl = stack(SyntheticStereo('street', **opts), ('left', 'right')) | {'source': 'unlabelled'}   # no labels at all
    return lab, unl


@pytest.mark.parametrize('variant', VARIANTS)
def test_losses_go_down_on_a_fixed_batch(variant, batches, device):
    torch.manual_seed(0)
    m = DFR(variant, width=8).to(device).train()
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    lab, unl = ({k: (v.to(device) if torch.is_tensor(v) else v) for k, v in b.items()} for b in batches)
    stage, hist = StageConfig(), []
    for step in range(60):
        for b in ((lab,) if variant == 'supervised' else (lab, unl)):
            terms = m.losses(b, stage)
            opt.zero_grad(); sum(terms.values()).backward(); opt.step()
            hist.append({k: float(v.detach()) for k, v in terms.items()})
    for k in hist[0]:
        series = [h[k] for h in hist if k in h]
        first, last = sum(series[:3]) / 3, sum(series[-5:]) / 5
        assert last < 0.8 * first, f'{variant}: loss term {k} went from {first:.4f} to {last:.4f}'
    expected = {'epe', 'occ'} | ({'ph', 'smooth'} if variant == 'semi_ph' else {'dfr', 'smooth'} if variant == 'semi_dfr' else set())
    assert set().union(*hist) == expected
