"""Scale out from the command line, as a user types it: `torchrun … -m depthnb train|render …` on CPU with
gloo, one machine or two "machines" on one host, a rank killed under `--max-restarts`, and the forms of
`python -m`. All traffic stays on the loopback interface; every launch is bounded in time and its whole
process group is killed when it runs over.

The reference of the training tests is one uninterrupted run on 2 processes of the toy method
(tests/engine_toy.py, dropout off): batch 2 per process, 8 steps in 2 stages, a checkpoint every step."""
import contextlib
import dataclasses
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

import depthnb

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))
from tests.engine_toy import Toy, ToyData, config  # noqa: E402
from tests.test_engine import assert_same, free_port  # noqa: E402

TOY_TRAIN = ['train', '--method', 'tests.engine_toy:Toy', '--set', 'batch_size=2',
             '--set', 'method_args.dropout=0']
LAUNCH_TIMEOUT_S = 90      # one torchrun launch (a toy run takes ~15 s on 2 busy cores)


def loopback() -> str:
    "The name of the loopback interface (gloo's sockets are pinned to it)."
    names = [name for _, name in socket.if_nameindex()]
    return next((name for name in ('lo', 'lo0') if name in names), names[0])


ENV = os.environ | {'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT), 'GLOO_SOCKET_IFNAME': loopback()}


def start(torchrun_args: list, command: list, env: dict | None = None) -> subprocess.Popen:
    "`torchrun TORCHRUN_ARGS -m depthnb COMMAND` in a session of its own (so that it can be killed whole)."
    launch = [str(BIN / 'torchrun'), '--local-addr', '127.0.0.1', *map(str, torchrun_args),
              '-m', 'depthnb', *map(str, command)]
    return subprocess.Popen(launch, cwd=ROOT, env=ENV | (env or {}), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(process: subprocess.Popen, timeout: float = LAUNCH_TIMEOUT_S) -> subprocess.CompletedProcess:
    "Wait for a launch; past `timeout`, kill its whole process group (agent and workers) and fail."
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f'{process.args} ran over {timeout} s; stderr: {err[-3000:]}')
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def one_machine(command: list) -> subprocess.CompletedProcess:
    "`torchrun --nproc_per_node 2 -m depthnb COMMAND` on 127.0.0.1 and a free port."
    return finish(start(['--nproc_per_node', 2, '--master_addr', '127.0.0.1', '--master_port', free_port()],
                        command))


def final_model(run: Path) -> dict:
    "The parameters of the last checkpoint of a run folder."
    from depthnb.engine import load_checkpoint
    checkpoint = load_checkpoint(run, 'toy')
    assert checkpoint['step'] == 8, f'{run} stopped at step {checkpoint["step"]}'
    return checkpoint['model']


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    "The uninterrupted run: `torchrun --nproc_per_node 2 -m depthnb train` (result, run folder)."
    run = tmp_path_factory.mktemp('scale') / 'reference'
    result = one_machine([*TOY_TRAIN, '--set', f'out={run}'])
    assert result.returncode == 0, result.stderr[-3000:]
    return result, run


# ---- one machine ---------------------------------------------------------------------------------------
def test_torchrun_train_equals_one_process_with_the_global_batch(reference, tmp_path):
    result, run = reference
    assert {'config.yaml', 'log.jsonl', 'last.pt'} <= {p.name for p in run.iterdir()}   # rank 0 wrote the run
    assert result.stdout.count('trained tests.engine_toy:Toy') == 1, result.stdout           # rank 0 speaks
    assert '[rank1]' not in result.stderr, result.stderr[-3000:]                             # rank 1 does not
    one_process = config(tmp_path / 'one', batch=4)            # one process with the global batch, 2 × 2
    one_process = dataclasses.replace(one_process, method_args={'dropout': 0.0})
    one = depthnb.train(one_process, datasets={'train': ToyData()})
    ddp = final_model(run)
    for name, value in one.state_dict().items():
        torch.testing.assert_close(ddp[name], value, atol=1e-5, rtol=1e-5, msg=name)


def meeting_point(rendezvous: str, port: int) -> list:
    "The torchrun options by which two machines find each other: a c10d rendezvous, or a fixed master."
    if rendezvous == 'c10d':
        return ['--rdzv-backend', 'c10d', '--rdzv-endpoint', f'127.0.0.1:{port}', '--rdzv-id', 'scale-test']
    return ['--master_addr', '127.0.0.1', '--master_port', port]


@pytest.mark.parametrize('rendezvous', ['c10d', 'static'])
def test_two_machines(reference, tmp_path, rendezvous):
    "Two `torchrun --nnodes 2 --node_rank {0,1}` launches meeting on 127.0.0.1, one process each."
    _, run = reference
    port = free_port()
    machine = ['--nnodes', 2, '--nproc_per_node', 1, *meeting_point(rendezvous, port)]
    launches = [start([*machine, '--node_rank', node], [*TOY_TRAIN, '--set', f'out={tmp_path / "run"}'])
                for node in (0, 1)]
    results = [finish(launch) for launch in launches]
    for node, result in enumerate(results):
        assert result.returncode == 0, f'node {node}: {result.stderr[-3000:]}'
    assert sum(result.stdout.count('trained tests.engine_toy:Toy') for result in results) == 1
    assert_same(final_model(run), final_model(tmp_path / 'run'))


def test_a_killed_rank_is_restarted_and_resumes_exactly(reference, tmp_path):
    "`--max-restarts 1`: rank 1 SIGKILLs itself in step 6; torchrun reruns the command, which resumes."
    _, run = reference
    started = time.time()
    launch = start(['--nproc_per_node', 2, '--max-restarts', 1, '--rdzv-backend', 'c10d',
                    '--rdzv-endpoint', f'127.0.0.1:{free_port()}'],
                   [*TOY_TRAIN, '--set', f'out={tmp_path / "run"}'], env={'DEPTHNB_TOY_KILL': '1:6'})
    result = finish(launch)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r'exitcode\s*:\s*-9', result.stderr), result.stderr[-3000:]           # it was killed
    assert result.stdout.count('holds a checkpoint of an earlier run: continuing it') == 1, result.stdout
    assert time.time() - started < LAUNCH_TIMEOUT_S
    assert_same(final_model(run), final_model(tmp_path / 'run'))


# ---- render ---------------------------------------------------------------------------------------------
def folder_bytes(folder: Path) -> dict[str, bytes]:
    "Every file of a cache folder but its (empty) lock file, by name."
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != '.lock'}


def test_torchrun_render_equals_one_process(tmp_path):
    from depthnb.cli import main
    args = ['render', '--world', 'flying', '--size', '16', '48', '--workers', '0']
    result = one_machine([*args, '--samples', 5, '--out', tmp_path / 'two'])   # torchrun takes --n itself
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count('wrote 5 flying samples') == 1, result.stdout
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main([*args, '--n', '5', '--out', str(tmp_path / 'one')]) == 0
    one, two = folder_bytes(tmp_path / 'one'), folder_bytes(tmp_path / 'two')
    assert sorted(two) == sorted(one) == [f'{i:06d}.pt' for i in range(5)] + ['meta.json']
    for name in one:
        assert two[name] == one[name], f'{name} differs'


# ---- the forms of the command, and what other ranks say --------------------------------------------------
@pytest.mark.parametrize('module', ['depthnb', 'depthnb.cli'])
def test_python_m_runs_the_command(module):
    shown = subprocess.run([sys.executable, '-m', module, 'render', '--help'], capture_output=True, text=True,
                           cwd=ROOT, timeout=60)
    assert shown.returncode == 0 and '--world' in shown.stdout, shown.stderr
    bare = subprocess.run([sys.executable, '-m', module], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert bare.returncode == 2 and 'COMMAND' in bare.stdout          # no command: the help, an error status
    wrong = subprocess.run([sys.executable, '-m', module, 'render', '--world', 'moon'], capture_output=True,
                           text=True, cwd=ROOT, timeout=60)
    assert wrong.returncode == 2 and "invalid choice: 'moon'" in wrong.stderr


def test_a_failing_rank_names_itself_and_other_ranks_print_nothing(monkeypatch, capsys, tmp_path):
    from depthnb.cli import main
    monkeypatch.setenv('WORLD_SIZE', '2')
    monkeypatch.setenv('TORCH_CPP_LOG_LEVEL', 'unset below')       # so that the test ends with it as it was
    monkeypatch.delenv('TORCH_CPP_LOG_LEVEL')
    with warnings.catch_warnings():                                  # rank 1 switches warnings off
        monkeypatch.setenv('RANK', '1')
        assert main(['train', '--method', 'tests.engine_toy:Toy', '--set', 'stages.0.stepz=1']) == 2
        assert os.environ['TORCH_CPP_LOG_LEVEL'] == 'ERROR'
    captured = capsys.readouterr()
    assert captured.err.startswith('depthnb train: rank 1: error: '), captured.err
    assert main(['eval', '--checkpoint', str(tmp_path), '--data', 'flying']) == 2   # one process only
    assert capsys.readouterr().err == ''                                             # rank 1 stays silent
    monkeypatch.setenv('RANK', '0')
    assert main(['eval', '--checkpoint', str(tmp_path), '--data', 'flying']) == 2
    assert 'start it without torchrun' in capsys.readouterr().err


# ---- engine safeguards for many processes --------------------------------------------------------------
class Sleepy(torch.utils.data.Dataset):
    "A dataset whose DataLoader workers hang (sleep) or die on every sample."
    def __init__(self, die: bool = False):
        self.die = die

    def __len__(self):
        return 8

    def __getitem__(self, i):
        if self.die:
            os._exit(3)
        time.sleep(2)
        return torch.zeros(2)


@pytest.mark.parametrize('die', [False, True])
def test_a_hung_or_dead_loader_worker_stops_with_the_dataset_named(die):
    from depthnb.engine import DataLoaderError, Stream
    # a dead worker is found by the DataLoader's status checks; its limit is long enough that a slow worker
    # start on a busy machine cannot time out first (a flake seen once with 0.5 s); a hung one times out
    stream = Stream('street-cache', Sleepy(die), batch_size=2, seed=0, workers=1, timeout=20. if die else 0.5)
    expected = 'worker died' if die else 'no batch came'
    with pytest.raises(DataLoaderError, match=f"dataset 'street-cache': .*{expected}"):
        stream.next()


def test_ranks_that_would_start_from_different_checkpoints_stop(tmp_path, monkeypatch):
    "What a run folder that is not shared between the nodes looks like: rank 1 resumes from nothing."
    from depthnb.engine import CheckpointError, Trainer
    import depthnb.engine as engine
    trainer = Trainer(Toy(), {'train': ToyData()}, config(tmp_path / 'run'))
    trainer.world = 2

    def gather(found, mine):
        found[:] = [mine, (0, None, 'no checkpoint')]
    monkeypatch.setattr(engine.dist, 'all_gather_object', gather)
    trainer.step = 3
    with pytest.raises(CheckpointError, match='rank 1: step 0 from no checkpoint.*shared by all nodes'):
        trainer._check_same_start({'digest': 'abc'})
    trainer.step = 0
    trainer._check_same_start(None)                                  # the same start on every rank
