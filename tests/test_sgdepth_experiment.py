"""The SGDepth recipe (issue 13) end to end at a tiny size: caches, subsets of variants and seeds split over
two "processes", a resumable results file in the shape of DESIGN.md, the moving-pixel metrics, the command
line."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from depthnb.experiments import sgdepth as recipe
from depthnb.methods.sgdepth import VARIANTS

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(size=(32, 96), steps=2, pretrain_steps=2, batch_size=2, n_train=4, n_eval=2, traffic=3.0)


def test_two_processes_write_one_results_file(tmp_path):
    paths = dict(cache=tmp_path / 'cache', runs=tmp_path / 'runs', configs=tmp_path / 'configs',
                 out=tmp_path / 'sgdepth.json')
    variants, seeds = ('depth_only', 'full'), (0, 1)
    first = recipe.run_experiment(variants, seeds, shard=(0, 2), **TINY, **paths)
    mine = recipe.shards(variants, seeds, 2)[0]
    assert len(mine) == 2 and len(first['setup']['missing']) == len(VARIANTS) * len(seeds) - len(mine)
    done_first = set(first['variants'])
    second = recipe.run_experiment(variants, seeds, shard=(1, 2), **TINY, **paths)
    assert sorted(second['setup']['missing']) == sorted(recipe.run_name(v, s) for v in VARIANTS
                                                         if v not in variants for s in seeds)
    trained = set(variants) | {'init', 'constant'}      # the shared init and the constant baseline: no seeds
    assert set(second['variants']) == trained and done_first <= trained
    results = json.loads(paths['out'].read_text())
    assert set(results) == {'setup', 'variants', 'configs'}
    assert set(results['configs']) == set(VARIANTS) | {'init'}        # every config, trained or not yet
    full = results['variants']['full']
    assert set(full) >= {'street', 'street_moving', 'street_city'}
    assert set(full['street']) >= {'abs_rel', 'sq_rel', 'rmse', 'a1', 'miou'}
    assert set(full['street_moving']) >= {'abs_rel', 'sq_rel', 'rmse', 'a1'}
    assert set(full['street_city']) == {'miou'}
    assert 'miou' not in results['variants']['depth_only']['street']
    for summary in (full['street']['abs_rel'], full['street_city']['miou']):
        assert set(summary) == {'mean', 'std', 'seeds'} and len(summary['seeds']) == len(seeds)
    constant = results['variants']['constant']
    assert set(constant) == {'street', 'street_moving'} and len(constant['street']['abs_rel']['seeds']) == 1
    init = results['configs']['init']
    assert init['method_args']['variant'] == 'depth_only' and init['stages'][0]['steps'] == 2
    assert results['configs']['full']['method_args']['init'] == init['out']
    assert len(results['variants']['init']['street']['abs_rel']['seeds']) == 1
    config = results['configs']['full']
    assert config['method'] == 'sgdepth' and config['method_args']['epochs'] == 1
    assert len(config['method_args']['class_weights']) == 19
    assert results['setup']['size'] == [32, 96] and results['setup']['traffic'] == 3.0
    # resumable: a finished run is not trained again
    stamp = (paths['runs'] / 'full-s0' / 'results.json').stat().st_mtime_ns
    recipe.run_experiment(('full',), (0,), **TINY, **paths)
    assert (paths['runs'] / 'full-s0' / 'results.json').stat().st_mtime_ns == stamp


def test_caches_have_the_traffic(tmp_path):
    folders = recipe.render_caches((24, 72), 2, 1, 2.0, tmp_path, progress=False)
    assert set(folders) == {'video', 'city', 'street_eval', 'city_eval'}
    meta = json.loads((folders['video'] / 'meta.json').read_text())
    assert meta['traffic'] == 2.0 and meta['video'] is True
    assert 'traffic2' in folders['city'].name


def test_moving_metrics_scale_by_all_pixels():
    """A prediction right up to one global scale everywhere but on the moving pixels, where it is twice too
    far: the moving pixels' abs_rel is about 1 (a per-object median would call it 0). Reference: NumPy, each
    image scaled by the ratio of the medians of all its pixels, the moving pixels' errors pooled."""
    gt = torch.linspace(5, 40, 2 * 16 * 24).view(2, 1, 16, 24)
    moving = torch.zeros_like(gt, dtype=torch.bool)
    moving[..., 4:8, 4:10] = True
    pred = torch.where(moving, 2 * gt, gt) * 3.
    acc = recipe.MovingDepthMetrics()
    acc.update({'depth_l': gt, 'moving': moving}, {'depth': pred})
    r = acc.result()
    g, p, m = gt.numpy()[:, 0], pred.numpy()[:, 0], moving.numpy()[:, 0]
    scaled = [np.clip(p[i] * np.median(g[i]) / np.median(p[i]), 1e-3, 80) for i in range(2)]
    rel = np.concatenate([np.abs(scaled[i] - g[i])[m[i]] / g[i][m[i]] for i in range(2)])
    sq = np.concatenate([(scaled[i] - g[i])[m[i]] ** 2 for i in range(2)])
    assert r['abs_rel'] == pytest.approx(rel.mean(), rel=1e-5) and r['abs_rel'] > 0.8
    assert r['rmse'] == pytest.approx(np.sqrt(sq.mean()), rel=1e-5)
    assert r['a1'] == 0.
    assert (r['pixels'], r['images']) == (2 * 24, 2)
    with pytest.raises(Exception, match='no moving pixel'):
        empty = recipe.MovingDepthMetrics()
        empty.update({'depth_l': gt, 'moving': torch.zeros_like(moving)}, {'depth': pred})
        empty.result()


def test_shards_balance_the_step_cost():
    parts = recipe.shards(VARIANTS, (0, 1, 2), 2)
    assert sorted(parts[0] + parts[1]) == sorted((v, s) for v in VARIANTS for s in (0, 1, 2))
    loads = [sum(recipe.STEP_COST[v] for v, _ in part) for part in parts]
    assert abs(loads[0] - loads[1]) <= max(recipe.STEP_COST.values())


def test_command_line_help():
    out = subprocess.run([sys.executable, str(ROOT / 'experiments' / 'sgdepth.py'), '--help'],
                         capture_output=True, text=True, check=True).stdout
    for option in ('--variants', '--seeds', '--shard', '--traffic', '--threads'):
        assert option in out
