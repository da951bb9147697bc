"""`depthnb adapt` (issue 10): self-supervised fine-tuning on the user's own pairs lowers the photometric loss
on them, is bounded in steps and seconds, writes a run that `depthnb.load` reads, and converts the runs of the
stereo methods (DFR's DispNet, Reciprocal's StereoNet) into `RealStereo` with the same weights."""
import json

import pytest
import torch
import yaml

import depthnb
from depthnb.adapt import ADAPT_FILE, StereoPairs, adapt, real_stereo_of
from depthnb.cli import main
from depthnb.core import DepthnbInputError
from depthnb.data.io import write_image
from depthnb.data.synthetic import SyntheticStereo
from depthnb.engine import load_checkpoint
from depthnb.methods.realstereo import RealStereo

SIZE = [32, 64]


def _train(out, method, method_args, world='flying', steps=2):
    data = {'train': {'type': 'SyntheticStereo', 'args': {'world': world, 'size': SIZE, 'n': 4}}}
    return depthnb.train(dict(method=method, method_args=method_args, data=data,
                              stages=[{'name': 'stereonet' if method == 'reciprocal' else 'train',
                                       'steps': steps, 'data': ['train']}],
                              batch_size=2, out=str(out), progress=False, tensorboard=False))


@pytest.fixture(scope='module')
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp('pair')
    sample = SyntheticStereo('street', size=tuple(SIZE), n=1, seed=3)[0]
    for view in ('left', 'right'):
        write_image(folder / f'{view}.png', sample[view])
    return folder, {view: sample[view][None] for view in ('left', 'right')}


@pytest.fixture(scope='module')
def dfr_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('runs') / 'dfr'
    _train(out, 'supervised', {'width': 8})
    return out


def _photometric(method, images) -> float:
    with torch.no_grad():
        return float(method.eval().unlabelled_terms(images)['photometric'])


def test_adapt_lowers_the_photometric_loss(dfr_run, pair, tmp_path):
    folder, images = pair
    args, state = real_stereo_of(dfr_run)
    assert args['net'] == 'dispnet' and args['max_disp'] == pytest.approx(0.3 * SIZE[1])
    before = RealStereo(**args)
    before.load_state_dict(state)
    source = depthnb.load(dfr_run, 'cpu')
    torch.testing.assert_close(before.predict(images['left'], images['right'])['disp'],
                               source.predict(images['left'], images['right'])['disp'])
    adapted = adapt(dfr_run, folder / 'left.png', folder / 'right.png', tmp_path / 'adapted', steps=15,
                    seconds=120, lr=5e-4, batch_size=1, progress=False)
    assert _photometric(adapted, images) < _photometric(before, images)
    loaded = depthnb.load(tmp_path / 'adapted', 'cpu')
    torch.testing.assert_close(loaded.predict(images['left'], images['right'])['disp'],
                               adapted.predict(images['left'], images['right'])['disp'])
    record = json.loads((tmp_path / 'adapted' / ADAPT_FILE).read_text())
    assert record['steps'] == 15 and record['source'] == str(dfr_run.resolve())


def test_time_limit_and_resume(dfr_run, pair, tmp_path):
    folder, _ = pair
    for _ in range(2):                            # the second call finds the run finished
        adapt(dfr_run, folder / 'left.png', folder / 'right.png', tmp_path / 'quick', steps=40, seconds=1e-6,
              batch_size=1, progress=False)
        assert load_checkpoint(tmp_path / 'quick')['step'] == 1
        assert yaml.safe_load((tmp_path / 'quick' / 'config.yaml').read_text())['stages'][0]['steps'] == 1


def test_cli_adapt(dfr_run, pair, tmp_path, capsys):
    folder, images = pair
    status = main(['adapt', str(dfr_run), '--left', str(folder / 'left.png'), '--right',
                   str(folder / 'right.png'), '--out', str(tmp_path / 'cli'), '--steps', '2'])
    assert status == 0
    assert '2 steps' in capsys.readouterr().out
    assert depthnb.load(tmp_path / 'cli', 'cpu').predict(images['left'], images['right'])['disp'].shape == \
        (1, 1, *SIZE)
    assert main(['adapt', str(dfr_run), '--left', str(folder / 'left.png'), '--right',
                 str(folder / 'missing.png'), '--out', str(tmp_path / 'bad')]) == 2
    assert 'missing.png' in capsys.readouterr().err


def test_reciprocal_runs_convert(tmp_path, pair):
    _, images = pair
    stereo_args = {'levels': 3, 'widths': [8, 8, 8, 8], 'est_widths': [8]}
    run = tmp_path / 'reciprocal'
    _train(run, 'reciprocal', {'max_disp': 16, 'stereo_args': stereo_args, 'mono_layers': 18,
                               'output': 'stereonet'}, world='street', steps=0)
    args, state = real_stereo_of(run)
    assert args == {'net': 'stereonet', 'max_disp': 16., 'net_args': {'encoder': 'unet', **stereo_args}}
    converted = RealStereo(**args)
    converted.load_state_dict(state)
    source = depthnb.load(run, 'cpu')
    torch.testing.assert_close(converted.predict(images['left'], images['right'])['disp'],
                               source.predict(images['left'], images['right'], output='stereonet')['disp'])


def test_stereo_pairs_folders(tmp_path, pair):
    folder, images = pair
    for view in ('left', 'right'):
        (tmp_path / view).mkdir()
        for name in ('a', 'b'):
            write_image(tmp_path / view / f'{name}.png', images[view][0])
    pairs = StereoPairs(tmp_path / 'left', tmp_path / 'right', size=(16, 32))
    assert len(pairs) == 2 and pairs[1]['name'] == 'b' and pairs[0]['left'].shape == (3, 16, 32)
    with pytest.raises(DepthnbInputError, match='size'):
        StereoPairs(folder / 'left.png', folder / 'right.png', size=(4, 4))
