"""depthnb.results on small results files written here, and the shape of the committed results files."""
import json
import math
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use('Agg')

from depthnb.core import DepthnbInputError
from depthnb.experiments import dfr as dfr_recipe
from depthnb.results import (compare, load_results, markdown_table, mean_std, seed_spread, summarise, table,
                             to_markdown, update_readme, verdicts)

ROOT = Path(__file__).resolve().parents[1]


def _summary(values):
    return {'mean': float(np.mean(values)), 'std': float(np.std(values, ddof=1)), 'seeds': list(values)}


@pytest.fixture
def root(tmp_path):
    "A results folder with `toy.json`: two variants, three seeds, two eval sets, the training time."
    variants = {'a': {'street': {'epe': _summary([2.0, 2.2, 2.1]), 'd1': _summary([0.2, 0.3, 0.25])},
                      'real': {'epe': _summary([3.0, 3.5, 4.0])},
                      'train': {'seconds': _summary([60., 120., 90.])}},
                'b': {'street': {'epe': _summary([1.0, 1.1, 1.2]), 'd1': _summary([0.1, 0.3, 0.2])},
                      'train': {'seconds': _summary([300., 310., 320.])}}}
    (tmp_path / 'toy.json').write_text(json.dumps({'setup': {'seeds': [3, 4, 5]}, 'variants': variants}))
    return tmp_path


def test_summarise_matches_numpy():
    values = [0.3, 1.7, 2.2, 5.0]
    s = summarise(values)
    assert s['seeds'] == values
    assert math.isclose(s['mean'], np.mean(values)) and math.isclose(s['std'], np.std(values, ddof=1))
    assert summarise([4.0])['std'] == 0.0
    with pytest.raises(DepthnbInputError, match='empty'):
        summarise([])


def test_table_means_stds_and_missing_cells(root):
    means = table('toy', root=root)
    assert list(means.index) == ['a', 'b']
    assert list(means.columns) == [('street', 'epe'), ('street', 'd1'), ('real', 'epe'), ('train', 'seconds')]
    assert math.isclose(means.loc['b', ('street', 'epe')], 1.1)
    assert math.isnan(means.loc['b', ('real', 'epe')])
    stds = table('toy', stat='std', root=root)
    assert math.isclose(stds.loc['a', ('real', 'epe')], 0.5)
    assert table('toy', stat='n', root=root).loc['a', ('street', 'd1')] == 3
    chosen = table('toy', sets=['real', 'street'], metrics=['epe'], variants=['b', 'a'], root=root)
    assert list(chosen.columns) == [('real', 'epe'), ('street', 'epe')] and list(chosen.index) == ['b', 'a']


def test_markdown_table_exact(root):
    text = markdown_table('toy', columns=['street/epe', 'real/epe'], digits=2, root=root)
    assert text.splitlines() == [
        '| variant | street epe | real epe |', '|---|---|---|',
        '| `a` | 2.10 ± 0.10 | 3.50 ± 0.50 |', '| `b` | 1.10 ± 0.10 | — |', '',
        'mean ± std over 3 training seeds (3, 4, 5); one run trained in 1–5 min']
    assert mean_std('toy', columns=['street/d1'], digits=1, root=root).loc['b'].tolist() == ['0.2 ± 0.1']


def test_to_markdown_plain_frame():
    import pandas as pd
    frame = pd.DataFrame({'x': [1.5], 'y': ['a|b']}, index=pd.Index(['r'], name='row'))
    assert to_markdown(frame, code_index=False) == '| row | x | y |\n|---|---|---|\n| r | 1.5 | a\\|b |'


def test_verdicts(root):
    assert compare('toy', 'b', 'a', 'street', 'epe', root=root)['verdict'] == 'real: b ahead'
    assert compare('toy', 'b', 'a', 'street', 'd1', root=root)['verdict'] == 'within seed spread (b ahead)'
    frame = verdicts('toy', base='a', root=root)
    assert ('b vs a', 'real', 'epe') not in frame.index           # b has no real/epe
    assert math.isclose(frame.loc[('b vs a', 'train', 'seconds'), 'Δ'], 220.)
    assert math.isclose(frame.loc[('b vs a', 'street', 'epe'), 'spread'], 0.2)


@pytest.mark.parametrize('content, message', [
    (None, 'toy2.json: no such results file'),
    ('{"variants": {', 'toy2.json: not valid JSON'),
    ('[1, 2]', 'toy2.json: expected'),
    ('{"variants": {"a": {"s": {"epe": 2.0}}}}', 'variants.a.s.epe must be'),
    ('{"variants": {"a": {"s": {"epe": {"mean": 2.0, "std": 0, "seeds": []}}}}}', 'non-empty list'),
    ('{"variants": {"a": {"s": {"epe": {"mean": 2.0, "std": 0, "seeds": [1.0]}}}}}', 'not the mean'),
    ('{"variants": {"a": {"epe": {"mean": 1.0, "std": 0, "seeds": [1.0]}}}}', 'variants.a.epe must map'),
])
def test_bad_files_name_themselves(tmp_path, content, message):
    if content is not None:
        (tmp_path / 'toy2.json').write_text(content)
    with pytest.raises(DepthnbInputError, match=message.replace('.', r'\.')):
        table('toy2', root=tmp_path)


def test_seed_spread_draws_seeds_and_mean_std(root):
    fig = seed_spread('toy', sets=['street'], metrics=['epe'], root=root)
    ax = fig.axes[0]
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    assert sorted(points[:, 1].round(6).tolist()) == sorted([2.0, 2.2, 2.1, 1.0, 1.1, 1.2])
    bars = sorted((np.nanmin(line.get_ydata()), np.nanmax(line.get_ydata())) for line in ax.lines
                  if len(line.get_ydata()) > 2)                 # seaborn: one line per error bar and its caps
    np.testing.assert_allclose(bars, [(1.0, 1.2), (2.0, 2.2)], atol=1e-9)     # mean ± std, n − 1
    assert ax.get_title() == 'street: epe'


def test_update_readme_rewrites_only_blocks(root):
    readme = root / 'README.md'
    readme.write_text('intro 1.23\n\n<!-- table:toy columns=street/epe -->\nold\n<!-- /table -->\n\nend\n')
    assert update_readme(readme, root=root) == ['table:toy']
    text = readme.read_text()
    assert text.startswith('intro 1.23\n\n<!-- table:toy columns=street/epe -->\n\n| variant | street epe |')
    assert text.endswith('\n\n<!-- /table -->\n\nend\n') and 'old' not in text
    assert update_readme(readme, root=root) == []
    readme.write_text('<!-- table:missing -->\n<!-- /table -->\n')
    with pytest.raises(DepthnbInputError, match='missing.json'):
        update_readme(readme, root=root)


def test_committed_results_files_have_the_design_shape():
    "Every results/*.json reads as ../shared/DESIGN.md's shape (load_results checks each summary)."
    for path in sorted((ROOT / 'results').glob('*.json')):
        results = load_results(path)
        assert {'setup', 'variants', 'configs'} <= set(results), path
    for name in ('dfr', 'lsim'):
        results = load_results(ROOT / 'results' / f'{name}.json')
        for variant, sets in results['variants'].items():
            assert len(sets['train']['seconds']['seeds']) == len(results['setup']['seeds']), (name, variant)
            assert results['configs'][variant]['method_args']['variant'] == variant


def test_dfr_results_are_the_merge_of_the_seed_files():
    seeds_dir = ROOT / 'results' / 'dfr' / 'seeds'
    merged = dfr_recipe.merge_seeds({int(p.stem[4:]): json.loads(p.read_text())
                                     for p in seeds_dir.glob('seed*.json')})
    committed = json.loads((ROOT / 'results' / 'dfr.json').read_text())
    assert committed == merged
    seeds = committed['setup']['seeds']
    assert seeds == sorted(seeds) and len(seeds) >= 2
    for variant in ('supervised', 'semi_ph', 'semi_dfr'):
        street = committed['variants'][variant]['street']
        assert {'epe', 'd1', 'epe_occluded', 'd1_textureless', 'epe_depth_edges'} <= set(street)
        per_seed = [json.loads((seeds_dir / f'seed{s}.json').read_text())['variants'][variant]
                    for s in committed['setup']['seeds']]
        occluded = [r['street']['regions']['occluded']['epe'] for r in per_seed]
        assert street['epe_occluded']['seeds'] == occluded


def test_dfr_merge_command(tmp_path):
    "experiments/dfr.py --merge: old one-seed files in, the merged file out (no training)."
    import importlib.util
    spec = importlib.util.spec_from_file_location('dfr_script', ROOT / 'experiments' / 'dfr.py')
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    seeds = ROOT / 'results' / 'dfr' / 'seeds'
    copies = []
    for name in ('seed0.json', 'seed1.json'):
        (tmp_path / name).write_text((seeds / name).read_text())
        copies.append(str(tmp_path / name))
    out = tmp_path / 'dfr.json'
    results = script.main(['--merge', *copies, '--seeds-dir', str(tmp_path / 'seeds'), '--out', str(out)])
    assert json.loads(out.read_text()) == results
    assert results['setup']['seeds'] == [0, 1]
    with pytest.raises(DepthnbInputError, match='cannot be merged again'):
        script.main(['--merge', str(out), '--seeds-dir', str(tmp_path / 'seeds'), '--out', str(out)])
