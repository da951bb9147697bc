"""The README's result tables are generated from results/<method>.json (depthnb.results.update_readme) and
must not differ from them: `python -m depthnb.results --readme README.md` rewrites them."""
import json
import re
import subprocess
import sys
from pathlib import Path

from depthnb.results import load_results, readme_blocks, update_readme

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'


def test_readme_tables_match_the_results_files():
    stale = update_readme(README, check=True, root=ROOT / 'results')
    assert stale == [], (f'README.md: {stale} differ from results/*.json; '
                         'run `python -m depthnb.results --readme README.md`')


def test_every_method_with_results_has_a_generated_table():
    blocks = readme_blocks(README.read_text(), root=ROOT / 'results')
    tabled = {b['name'] for b in blocks if b['kind'] == 'table'}
    files = {p.stem for p in (ROOT / 'results').glob('*.json')}
    assert files <= tabled, f'results files without a README table: {sorted(files - tabled)}'


def test_dfr_table_shows_the_json_numbers():
    "The numbers the README shows are the file's, rounded: the seed-0 hand-typed 2.03 is gone."
    results = load_results('dfr', ROOT / 'results')
    street = results['variants']['semi_ph']['street']['epe']
    section = README.read_text().split('## The DFR experiment')[1].split('\n## ')[0]
    assert f"{street['mean']:.3f} ± {street['std']:.3f}" in section
    assert '**2.03**' not in section and '3.58 (37.2 %)' not in section


def test_no_hand_typed_numbers_in_the_result_sections():
    """Outside the generated blocks, the DFR and LSIM sections carry no result numbers (decimals): only
    the paper's numbers (cited), which are allowed explicitly."""
    text = README.read_text()
    for block in readme_blocks(text, root=ROOT / 'results'):
        text = text.replace(block['current'], '')
    for title in ('## The DFR experiment', '## The LSIM experiment'):
        section = text.split(title)[1].split('\n## ')[0]
        decimals = set(re.findall(r'\b\d+\.\d+\b', section)) - {'0.114', '0.113'}
        assert not decimals, f'{title}: hand-typed numbers {sorted(decimals)}; generate them from results/'


def test_command_line_check(tmp_path):
    readme = tmp_path / 'README.md'
    readme.write_text(README.read_text())
    command = [sys.executable, '-m', 'depthnb.results', '--readme', str(readme),
               '--root', str(ROOT / 'results')]
    run = lambda *args: subprocess.run([*command, *args], capture_output=True, text=True)
    assert run('--check').returncode == 0
    readme.write_text(readme.read_text().replace('mean ± std over', 'mean ± std (edited) over', 1))
    checked = run('--check')
    assert checked.returncode == 1 and 'stale table:' in checked.stdout
    assert run().returncode == 0 and run('--check').returncode == 0
    assert readme.read_text() == README.read_text()
