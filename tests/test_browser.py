"""JupyterLab in a real browser: `nbs/55_inspector.ipynb` runs in Debian's Chromium (driven by Playwright, no
browser download), no cell raises, and a click on the inspector's image moves its curve figure to the clicked
pixel. A screenshot lands in `tests/artifacts/`.

Skipped when Chromium (or Playwright) is absent, unless `DEPTHNB_REQUIRE_BROWSER=1` (CI), where that fails."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = 'nbs/55_inspector.ipynb'
ARTIFACTS = ROOT / 'tests' / 'artifacts'
REQUIRE = os.environ.get('DEPTHNB_REQUIRE_BROWSER') == '1'
START_S, LOAD_S, RUN_S, CLICK_S = 120, 90, 300, 60     # bounds of each phase (seconds)
PIXEL = (150, 20)                                     # the pixel the test clicks on the entropy map

# Lab settings for the test: no autosave, every cell rendered (no windowing), no news pop-up.
SETTINGS = {'@jupyterlab/docmanager-extension/plugin.jupyterlab-settings': {'autosave': False},
            '@jupyterlab/notebook-extension/tracker.jupyterlab-settings': {'windowingMode': 'none'},
            '@jupyterlab/apputils-extension/notification.jupyterlab-settings': {'fetchNews': 'false'}}


def _absent(reason: str):
    if REQUIRE:
        pytest.fail(f'{reason}; DEPTHNB_REQUIRE_BROWSER=1 makes this a failure')
    pytest.skip(f'{reason}: the browser test is skipped (apt-get install chromium to run it)')


@pytest.fixture(scope='module')
def chromium() -> str:
    path = shutil.which('chromium') or shutil.which('chromium-browser')
    if path is None:
        _absent("Debian's chromium is not on PATH")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _absent('playwright is not installed in this environment')
    return path


def _root() -> bool:
    "Running as root: JupyterLab needs --allow-root and Chromium --no-sandbox."
    return hasattr(os, 'geteuid') and os.geteuid() == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _api(base: str, path: str, token: str, method: str = 'GET', timeout: float = 5):
    request = urllib.request.Request(f'{base}{path}', method=method,
                                     headers={'Authorization': f'token {token}'})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body else None


def _stop(proc: subprocess.Popen, base: str, token: str) -> None:
    "Shut the kernels and the server down through the API; then SIGTERM / SIGKILL its process group."
    try:
        for kernel in _api(base, '/api/kernels', token):
            _api(base, f"/api/kernels/{kernel['id']}", token, 'DELETE', timeout=20)
        _api(base, '/api/shutdown', token, 'POST')
    except (OSError, urllib.error.URLError, ValueError):
        pass
    for sig, wait in ((None, 15), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if sig is not None and proc.poll() is None:
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on 127.0.0.1 with a token, on a copy of the notebook (`demo_out` and `results` linked: the
    notebook sees the repository's runs when there are); yields (base URL, token); stopped at the end, even on
    failure."""
    root = tmp_path / 'lab'
    (root / 'nbs').mkdir(parents=True)
    shutil.copy(ROOT / NOTEBOOK, root / NOTEBOOK)
    for linked in ('demo_out', 'results'):
        if (ROOT / linked).exists():
            (root / linked).symlink_to(ROOT / linked)
    settings = tmp_path / 'settings'
    for name, values in SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    port, token = _free_port(), os.urandom(16).hex()
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / 'config'), IPYTHONDIR=str(tmp_path / 'ipython'),
               JUPYTER_RUNTIME_DIR=str(tmp_path / 'runtime'), PYTHONPATH=str(ROOT))
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ServerApp.ip=127.0.0.1',
           f'--ServerApp.port={port}', '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}',
           f'--ServerApp.root_dir={root}', '--LabApp.expose_app_in_browser=True',
           f'--LabApp.user_settings_dir={settings}', f'--LabApp.workspaces_dir={tmp_path / "workspaces"}']
    if _root():
        cmd.append('--allow-root')
    log = open(tmp_path / 'lab.log', 'wb')
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f'http://127.0.0.1:{port}'
    try:
        deadline = time.monotonic() + START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f'JupyterLab exited with {proc.returncode}:\n{_tail(tmp_path / "lab.log")}')
            try:
                _api(base, '/api/status', token)
                break
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    pytest.fail(f'JupyterLab did not answer in {START_S} s:\n{_tail(tmp_path / "lab.log")}')
                time.sleep(0.5)
        yield base, token
    finally:
        _stop(proc, base, token)
        log.close()
        if proc.poll() is None:
            print(f'warning: JupyterLab (pid {proc.pid}) did not stop')


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors='replace')[-n:]


NOTEBOOK_STATE = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext || !panel.sessionContext.session) return null;
  const kernel = panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  const errors = [];
  cells.forEach((c, i) => c.model.outputs.toJSON().forEach(o => {
    if (o.output_type === 'error') errors.push(`code cell ${i}: ${o.ename}: ${o.evalue}`);
  }));
  return {kernel: kernel ? kernel.status : 'none', cells: cells.length,
          executed: cells.filter(c => c.model.executionCount !== null).length,
          running: cells.filter(c => c.model.executionState === 'running').length, errors};
}"""
KERNEL_IDLE = f'() => {{ const s = ({NOTEBOOK_STATE})(); return s && s.kernel === "idle"; }}'
RAN_OR_RAISED = f"""() => {{
  const s = ({NOTEBOOK_STATE})();
  return s && (s.errors.length > 0 || (s.executed === s.cells && s.running === 0 && s.kernel === 'idle'));
}}"""
# The plotly figures of the inspector are told apart by their layout.meta.
PLOT = """(meta) => [...document.querySelectorAll('.js-plotly-plot')]
                  .find(p => p.layout && p.layout.meta === meta)"""
CURVE_TITLE = f"""() => {{
  const p = ({PLOT})('depthnb-inspector-curves');
  const t = p && p.layout.title;
  return p ? ((t && t.text !== undefined) ? t.text : t) : null;
}}"""
TITLE_STARTS = f'(want) => {{ const t = ({CURVE_TITLE})(); return !!t && t.startsWith(want); }}'
# The screen position of pixel (x, y) on the entropy map (subplot 2 of the image figure).
PIXEL_POSITION = f"""([x, y]) => {{
  const p = ({PLOT})('depthnb-inspector-image');
  p.scrollIntoView({{block: 'center'}});
  const xa = p._fullLayout.xaxis2, ya = p._fullLayout.yaxis2, box = p.getBoundingClientRect();
  return [box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(y)];
}}"""
STDERR_TRACEBACK = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'


def test_inspector_notebook_in_chromium(chromium, lab):
    from playwright.sync_api import sync_playwright
    base, token = lab
    ARTIFACTS.mkdir(exist_ok=True)
    t0 = time.monotonic()
    args = ['--disable-dev-shm-usage'] + (['--no-sandbox'] if _root() else [])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=args, timeout=60_000)
        page = browser.new_page(viewport={'width': 1500, 'height': 1300})
        page.set_default_timeout(LOAD_S * 1000)
        try:
            page.goto(f'{base}/lab/tree/{NOTEBOOK}?token={token}')
            page.wait_for_function(KERNEL_IDLE, timeout=LOAD_S * 1000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            page.wait_for_function(RAN_OR_RAISED, timeout=RUN_S * 1000, polling=500)
            run_s = time.monotonic() - t0
            state = page.evaluate(NOTEBOOK_STATE)
            assert not state['errors'], f'cells raised: {state["errors"]}'
            assert state['executed'] == state['cells'] > 0, state
            assert page.locator(STDERR_TRACEBACK, has_text='Traceback').count() == 0
            page.wait_for_function(TITLE_STARTS, arg='pixel (120, 40)', timeout=CLICK_S * 1000)
            before = page.evaluate(CURVE_TITLE)
            sx, sy = page.evaluate(PIXEL_POSITION, list(PIXEL))
            page.mouse.move(sx, sy)
            page.mouse.click(sx, sy)
            clicked = f'pixel ({PIXEL[0]}, {PIXEL[1]})'
            page.wait_for_function(TITLE_STARTS, arg=clicked, timeout=CLICK_S * 1000)
            after = page.evaluate(CURVE_TITLE)
            assert re.match(r'pixel \(150, 20\) · street 0 · GT \d+\.\d\d px', after), after
            page.evaluate(f"() => ({PLOT})('depthnb-inspector-image').scrollIntoView({{block: 'start'}})")
            page.screenshot(path=str(ARTIFACTS / 'inspector.png'))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / 'inspector-failure.png'))
            raise
        finally:
            browser.close()
    total_s = time.monotonic() - t0
    print(f'browser test: the notebook ran in {run_s:.0f} s, all in {total_s:.0f} s; {before!r} -> {after!r}')
