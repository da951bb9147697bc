"""The package as a user gets it: it imports without the development tools, the console script works,
and the project files agree with what the README promises."""
import configparser
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ['depthnb', 'depthnb.core', 'depthnb.geometry', 'depthnb.losses', 'depthnb.metrics',
           'depthnb.warp_check', 'depthnb.cli', 'depthnb.viz', 'depthnb.data.io', 'depthnb.data.synthetic',
           'depthnb.data.datasets', 'depthnb.models', 'depthnb.engine', 'depthnb.api',
           'depthnb.methods.supervised', 'depthnb.methods.dfr', 'depthnb.demo', 'depthnb.analysis.regions',
           'depthnb.analysis.matching', 'depthnb.analysis.gradients', 'depthnb.analysis.occlusion',
           'depthnb.analysis.metrics_resampling']

BLOCK_DEV_TOOLS = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('nbdev', 'fastcore', 'execnb'):
            raise ImportError(f'runtime code imported the development tool {name!r}')
sys.meta_path.insert(0, Block())
"""


def test_runtime_does_not_import_dev_tools():
    code = BLOCK_DEV_TOOLS + ''.join(f'import {m}\n' for m in MODULES) + "print('ok')"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == 'ok', r.stderr


def test_settings_ini():
    cfg = configparser.ConfigParser(delimiters=['='])
    cfg.read(ROOT / 'settings.ini')
    d = cfg['DEFAULT']
    assert d['lib_name'] == 'depthnb'
    assert set(d['tst_flags'].split()) == {'slow', 'gpu'}
    assert 'depthnb=depthnb.cli:main' in d['console_scripts']
    dev = d['dev_requirements']
    for pkg in ('nbdev>=2.4.14,<3', 'execnb>=0.1.16,<0.2'): assert pkg in dev
    for pkg in ('nbdev', 'fastcore', 'execnb'): assert pkg not in d['requirements']


def test_console_script_help():
    exe = Path(sys.executable).with_name('depthnb')
    r = subprocess.run([str(exe), 'demo', '--help'], capture_output=True, text=True)
    assert r.returncode == 0 and '--factor' in r.stdout and '--out' in r.stdout


def test_readme_and_ci_agree():
    readme = (ROOT / 'README.md').read_text()
    assert 'make demo' in readme and 'make test' in readme
    assert 'make test' in (ROOT / '.ci' / 'run').read_text()
