"""The Reciprocal experiment recipe (issue 11): variants and jobs, configs that reproduce each row, the region
accumulator and the SGBM baseline by hand, shards that keep the α sweep after its teacher, and a tiny
end-to-end run of experiments/reciprocal.py that resumes without training again."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from depthnb.core import DepthnbInputError
from depthnb.engine import as_config
from depthnb.experiments import reciprocal as recipe
from depthnb.results import load_results

ROOT = Path(__file__).resolve().parents[1]


def test_every_variant_has_a_source():
    assert len(recipe.ALL_VARIANTS) == 15
    for variant in recipe.ALL_VARIANTS:
        source = recipe.variant_source(variant)
        assert source['output'] in ('stereonet', 'singlenet', 'fused', 'stereonet_d')
        assert (source['alpha_fusion'] is not None) == (source['output'] == 'fused')
    expected = dict(job='pipeline', output='fused', alpha_fusion=0.001)
    assert recipe.variant_source('fused_alpha_0.001') == expected
    with pytest.raises(DepthnbInputError, match='unknown variant'):
        recipe.variant_source('fused_alpha_2')


def test_configs():
    pipeline = recipe.job_config('pipeline', 2, runs='r')
    assert [s['name'] for s in pipeline['stages']] == ['stereonet', 'singlenet', 'stereonet_d']
    assert all(s['milestones'] == [int(0.75 * s['steps'])] for s in pipeline['stages'])
    assert pipeline['out'] == str(Path('r') / 'pipeline-s2') and pipeline['seed'] == 2
    sweep = recipe.job_config('singlenet_alpha_0.001', 2, runs='r')
    assert sweep['method_args']['teacher'] == str(Path('r') / 'pipeline-s2' / 'stage_0_stereonet.pt')
    assert sweep['method_args']['alpha_distill'] == 0.001
    for variant in recipe.ALL_VARIANTS:
        cfg = recipe.variant_config(variant, 0, runs='r')
        assert as_config(cfg).out == str(Path('r') / f'{variant}-s0')
        assert cfg['method_args']['output'] == recipe.variant_source(variant)['output']
    assert len(recipe.variant_config('stereonet')['stages']) == 1
    assert recipe.variant_config('fused_alpha_1')['method_args']['alpha_fusion'] == 1.0
    with pytest.raises(DepthnbInputError, match='unknown job'):
        recipe.job_config('stereonet', 0)


def test_region_errors_by_hand():
    gt = torch.full((1, 1, 4, 10), 6.)                            # K[0, 0] · baseline = 60: depth 10 m
    gt[..., 5:] = 2.                                              # depth 30 m: the far band
    pred = gt + 1.
    K = torch.eye(3)[None].clone()
    K[:, 0, 0] = 60.
    batch = {'left': torch.rand(1, 3, 4, 10), 'disp_l': gt, 'occ_l': torch.zeros(1, 1, 4, 10), 'K': K,
             'baseline': torch.ones(1)}
    acc = recipe.RegionErrors()
    acc.update(batch, {'disp': pred})
    res = acc.result()
    assert res['middle']['pixels'] == res['far']['pixels'] == 20 and 'near' not in res
    assert res['middle']['abs_rel'] == pytest.approx(abs(60 / 7 - 10) / 10)
    assert res['far']['abs_rel'] == pytest.approx(abs(20 - 30) / 30)
    assert (res['middle']['a1'], res['far']['a1']) == (1., 0.)
    assert res['non_occluded']['epe'] == pytest.approx(1.) and 'occluded' not in res


def test_fill_by_row():
    row = torch.tensor([0., 0., 4., 0., 0., 0., 8.]).view(1, 1, 1, 7)
    assert recipe.fill_by_row(row, row > 0).flatten().tolist() == [4., 4., 4., 4., 4., 8., 8.]


def test_shards_keep_the_sweep_after_its_teacher():
    jobs = recipe.jobs_of(recipe.ALL_VARIANTS, (0, 1, 2), (0, 1))
    for count in (1, 2, 3):
        parts = recipe.shards(jobs, count)
        assert sorted(sum(parts, [])) == sorted(jobs)
        for part in parts:
            for job, seed in part:
                if job.startswith('singlenet_alpha_'):
                    assert part.index(('pipeline', seed)) < part.index((job, seed))
    alone = recipe.shards(recipe.jobs_of(['singlenet_alpha_0.1'], (0,), (0,)), 2)
    assert sum(alone, []) == [('singlenet_alpha_0.1', 0)]


def test_estimated_time_fits_two_processes_of_90_minutes():
    parts = recipe.shards(recipe.jobs_of(recipe.ALL_VARIANTS, (0, 1, 2), (0,)), 2)
    minutes = [sum(recipe.job_seconds(job) for job, _ in part) / 60 for part in parts]
    assert max(minutes) < 80, minutes


def _script():
    spec = importlib.util.spec_from_file_location('reciprocal_script', ROOT / 'experiments' / 'reciprocal.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_experiment_end_to_end(tmp_path):
    argv = ['--variants', 'stereonet', 'fused_alpha_0.1', 'singlenet_alpha_1', 'singlenet_sgm',
            '--seeds', '0',
            '--sweep-seeds', '0', '--size', '32', '96', '--steps-stereonet', '1', '--steps-singlenet', '1',
            '--steps-stereonet-d', '1', '--n-train', '8', '--n-eval', '2', '--max-disp', '8',
            '--cache', str(tmp_path / 'cache'), '--runs', str(tmp_path / 'runs'),
            '--configs', str(tmp_path / 'configs'), '--out', str(tmp_path / 'reciprocal.json')]
    results = _script().main(argv)
    assert results['setup']['missing'] == []
    assert set(results['variants']) == {'stereonet', 'fused_alpha_0.1', 'singlenet_alpha_1', 'singlenet_sgm',
                                        'sgbm'}
    assert {'street', 'street_occluded', 'street_far', 'motorcycle'} <= set(results['variants']['stereonet'])
    assert {'street_median', 'motorcycle_median'} <= set(results['variants']['singlenet_sgm'])
    assert load_results(tmp_path / 'reciprocal.json')['configs']['fused_alpha_0.1']['method_args'][
        'alpha_fusion'] == 0.1
    assert sorted(p.stem for p in (tmp_path / 'configs').glob('*.yaml')) == sorted(
        ['stereonet', 'fused_alpha_0.1', 'singlenet_alpha_1', 'singlenet_sgm'])
    done = tmp_path / 'runs' / 'pipeline-s0' / 'results.json'
    stamp = done.stat().st_mtime_ns
    again = _script().main(argv)                                   # finished runs are not trained again
    assert done.stat().st_mtime_ns == stamp
    assert again['variants']['stereonet'] == results['variants']['stereonet']
    assert json.loads((tmp_path / 'reciprocal.json').read_text())['setup']['seeds'] == [0]
