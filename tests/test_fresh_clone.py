"""What a newcomer gets: a fresh clone of the committed HEAD, and the README's `make demo` run in it end to end
(a new .venv, PyTorch from pip, the demo with fewer training steps), then its outputs checked and the trained
run loaded with the clone's own Python.

Marked `slow`: plain `pytest tests/` (`make test`) skips it; `.ci/run` runs it after `make test` with
`make test-fresh` (`pytest -m slow tests/test_fresh_clone.py`). Every step writes its output to
`test-logs/fresh-clone/<step>.log` (kept, ignored by git); a failing step names its log and shows its tail.
`DEPTHNB_FRESH_CLONE_STEPS` sets the demo's training steps (default 20)."""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = ROOT / 'test-logs' / 'fresh-clone'
DEMO_STEPS = int(os.environ.get('DEPTHNB_FRESH_CLONE_STEPS', '20'))
TIMEOUTS_S = dict(clone=120, install=1800, demo=1800, load=300)
DEMO_FILES = ('metrics.json', 'predictions.png', 'entropy.png', 'warp_check.png', 'run/last.pt')

LOAD_CHECK = """
import json, sys
import torch
import depthnb
height, width = json.load(open('demo_out/metrics.json'))['size']
method = depthnb.load('demo_out/run', device='cpu')
left, right = torch.rand(2, 1, 3, height, width, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    disp = method.predict(left, right)['disp']
print('disparity', tuple(disp.shape), 'finite', bool(torch.isfinite(disp).all()), 'python', sys.executable)
assert tuple(disp.shape) == (1, 1, height, width), tuple(disp.shape)
assert torch.isfinite(disp).all()
"""


def newcomer_env() -> dict:
    "The environment of a shell that never saw this checkout's .venv or an outer make."
    env = {k: v for k, v in os.environ.items()
           if k not in ('VIRTUAL_ENV', 'PYTHONPATH', 'PYTHONHOME', 'MAKEFLAGS', 'MFLAGS', 'MAKELEVEL')}
    outer_bin = str(Path(sys.executable).parent)
    env['PATH'] = os.pathsep.join(p for p in env.get('PATH', '').split(os.pathsep) if p != outer_bin)
    return env


def log_tail(log: Path, chars: int = 6000) -> str:
    "The end of a log, each progress bar (updates separated by carriage returns) shown at its last update."
    text = log.read_bytes().decode('utf-8', errors='replace')      # read_text would turn \r into \n
    lines = [line.split('\r')[-1] for line in text.split('\n')]
    return '\n'.join(lines)[-chars:]


def run_step(name: str, cmd: list[str], cwd: Path, timings: dict) -> None:
    """Run one step with its output in `LOG_DIR/<name>.log`; on failure or timeout (the whole process group is
    killed) fail with the log's path and tail. Records the step's wall time in `timings`."""
    log = LOG_DIR / f'{name}.log'
    start = time.monotonic()
    with open(log, 'w') as out:
        out.write(f'$ cd {cwd} && {" ".join(cmd)}\n')
        out.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=newcomer_env(), start_new_session=True)
        try:
            status = proc.wait(timeout=TIMEOUTS_S[name])
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = f'timed out after {TIMEOUTS_S[name]} s'
    timings[name] = round(time.monotonic() - start, 1)
    if status != 0:
        pytest.fail(f'fresh clone: step {name!r} failed (exit status {status}) after {timings[name]:.0f} s.\n'
                    f'Full log: {log}\n--- last lines ---\n{log_tail(log)}', pytrace=False)


def numbers_named(data, names=('epe', 'd1'), where='metrics'):
    "(path, value) of every entry of `data` whose key is in `names`, at any depth."
    if isinstance(data, dict):
        for key, value in data.items():
            if key in names and isinstance(value, (int, float)):
                yield f'{where}.{key}', value
            else:
                yield from numbers_named(value, names, f'{where}.{key}')
    elif isinstance(data, list):
        for k, value in enumerate(data):
            yield from numbers_named(value, names, f'{where}[{k}]')


def test_make_demo_on_a_fresh_clone(tmp_path, capsys):
    if shutil.which('git') is None:
        pytest.skip('git is not installed')
    shutil.rmtree(LOG_DIR, ignore_errors=True)
    LOG_DIR.mkdir(parents=True)
    clone = tmp_path / 'depthnb'
    timings = {}
    try:
        run_step('clone', ['git', 'clone', '--quiet', '--no-hardlinks', str(ROOT), str(clone)], tmp_path, timings)
        run_step('install', ['make', 'venv'], clone, timings)
        run_step('demo', ['make', 'demo', f'DEMO_ARGS=--steps {DEMO_STEPS}'], clone, timings)
        out = clone / 'demo_out'
        missing = [name for name in DEMO_FILES if not (out / name).is_file()]
        assert not missing, f'demo_out lacks {missing}; demo log: {LOG_DIR / "demo.log"}'
        summary = json.loads((out / 'metrics.json').read_text())
        assert summary.get('steps') == DEMO_STEPS, (
            f"metrics.json says the demo trained {summary.get('steps')} steps, not {DEMO_STEPS}: "
            'the Makefile did not pass DEMO_ARGS to depthnb demo')
        found = list(numbers_named(summary.get('metrics')))
        assert found, f'metrics.json has no EPE / D1 values: {sorted(summary)}'
        not_finite = [(where, value) for where, value in found if not math.isfinite(value)]
        assert not not_finite, f'metrics.json has non-finite metrics: {not_finite}'
        run_step('load', [str(clone / '.venv' / 'bin' / 'python'), '-c', LOAD_CHECK], clone, timings)
    finally:
        (LOG_DIR / 'timings.json').write_text(json.dumps(dict(steps=DEMO_STEPS, seconds=timings), indent=1) + '\n')
        with capsys.disabled():
            print(f'\nfresh clone: demo with {DEMO_STEPS} steps; seconds per step {timings}; logs in {LOG_DIR}')
        shutil.rmtree(clone / '.venv', ignore_errors=True)       # gigabytes of PyTorch; the logs stay
