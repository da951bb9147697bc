"""The real-pair benchmark and the best recipe (issue 10): the results file has the issue's shape, SGBM is
OpenCV's with its holes filled, missing runs are recorded with a reason, the recipe's dataset augments only
the network inputs, and the scripts read their command lines."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

import depthnb
from depthnb.data.datasets import RealPair
from depthnb.experiments import real
from depthnb.experiments.reciprocal import fill_by_row
from depthnb.methods.reciprocal import sgbm_disparity

ROOT = Path(__file__).resolve().parents[1]
TINY_NET = dict(levels=3, widths=(8, 8, 8, 8), est_widths=(8,), finest=1)
SIXTEENTH = {'motorcycle_sixteenth': 16}


def _script(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp('real')
    cache = real.training_cache((32, 64), 4, d / 'cache', workers=0, progress=False)
    config = real.recipe_config(d / 'best', cache, steps=2, batch_size=2, net_args=TINY_NET)
    depthnb.train(config | {'progress': False, 'tensorboard': False})
    recipe = {'train_seconds': 1.5, 'recipe': 'tiny', 'adapt': dict(seconds=30., steps=2, lr=2e-4)}
    (d / 'best' / real.RECIPE_FILE).write_text(json.dumps(recipe))
    return d


def test_sgbm_row_is_opencv_with_filled_holes():
    pair = RealPair(4)[0]
    width = pair['left'].shape[-1]
    disp, valid = sgbm_disparity(pair['left'][None], pair['right'][None], real.sgbm_disparities(width))
    filled = fill_by_row(disp, valid)
    gt, ok = pair['disp_l'][None], pair['disp_l_valid'][None]
    epe = float((filled - gt).abs()[ok].mean())
    assert real.evaluate_pair(real.sgbm_for(width), RealPair(4))['epe'] == pytest.approx(epe, rel=1e-5)
    assert real.sgbm_disparities(width) == 32 and real.sgbm_disparities(741) == 96


def test_benchmark_shape(tiny_run, tmp_path):
    out = tmp_path / 'real.json'
    real.benchmark(tiny_run / 'best', tiny_run / 'best', out, tmp_path / 'work',
                   adapt=dict(seconds=30., steps=2, lr=2e-4), pairs=SIXTEENTH)
    results = json.loads(out.read_text())
    entry = results['motorcycle_sixteenth']
    assert set(entry) == {'sgbm', 'demo', 'demo_adapted', 'best'}
    for row in entry.values():
        assert 0 <= row['d1'] <= 1 and row['epe'] >= 0
    assert entry['best']['train_seconds'] == 1.5 and entry['best']['recipe'] == 'tiny'
    assert entry['best']['adapt_steps'] == 2 and 'epe' in entry['best']['before_adapt']
    assert depthnb.load(tmp_path / 'work' / 'demo-motorcycle_sixteenth' / 'run', 'cpu').name == 'real_stereo'


def test_bench_script_records_missing_runs(tmp_path):
    bench = _script(ROOT / 'benchmarks' / 'bench_real.py')
    bench.main(['--demo', str(tmp_path / 'nothing'), '--out', str(tmp_path / 'real.json'), '--threads', '1'])
    results = json.loads((tmp_path / 'real.json').read_text())
    for name in ('motorcycle_quarter', 'motorcycle_half'):
        entry = results[name]
        assert 'no checkpoint' in entry['demo']['skipped'] and 'no checkpoint' in entry['demo_adapted']['skipped']
        assert entry['best'] == {'skipped': 'no best run given'}
        assert entry['sgbm']['epe'] < 2


def test_camera_augmented_keeps_raw_images_and_gt(tiny_run):
    cache = next((tiny_run / 'cache').iterdir())
    ds = real.CameraAugmented(cache, seed=3)
    sample = ds[1]
    assert set(sample) == {'left', 'right', 'disp_l', 'left_aug', 'right_aug'}
    again = real.CameraAugmented(cache, seed=3)[1]
    assert torch.equal(sample['left_aug'], again['left_aug'])
    raw = ds.source[1]
    flipped = not torch.equal(sample['left'], raw['left'])
    expected = raw['disp_r'].flip(-1) if flipped else raw['disp_l']
    assert torch.equal(sample['disp_l'], expected)


def test_scripts_read_their_arguments():
    experiment = _script(ROOT / 'experiments' / 'real.py')
    a = experiment.parse_args(['--steps', '10', '--bench-only'])
    assert a.steps == 10 and a.bench_only and a.size == [128, 192] and a.max_seconds <= 3600


def test_train_best_sizes_its_steps_to_the_time(tmp_path):
    out = real.train_best(tmp_path / 'best', size=(32, 64), n_train=4, steps=3, max_seconds=60., batch_size=2,
                          cache=tmp_path / 'cache', workers=0, progress=False)
    record = json.loads((out / real.RECIPE_FILE).read_text())
    assert record['steps'] == 3 and record['step_seconds'] > 0 and record['train_seconds'] > 0
    assert 'StereoNet' in record['recipe'] and record['adapt'] == real.ADAPT
    again = real.train_best(tmp_path / 'best', size=(32, 64), n_train=4, steps=3, max_seconds=60., batch_size=2,
                            cache=tmp_path / 'cache', workers=0, progress=False)   # finished: kept as it is
    assert json.loads((again / real.RECIPE_FILE).read_text())['steps'] == 3
