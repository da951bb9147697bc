"""The engine: one entry point (`depthnb.train`), the batch contract, hooks, exact resume after a killed
process (also one rank of a torchrun job), damaged checkpoints, a full disk, DDP with torchrun on CPU, and
clear errors for bad input."""
import dataclasses
import errno
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import yaml

import depthnb
from depthnb.core import DepthnbInputError
from depthnb.engine import (LAST, PREVIOUS, CheckpointError, CheckpointWarning, Callback, ConfigError,
                            Trainer, TrainConfig, from_dict, load_checkpoint, load_config, read_yaml,
                            save_checkpoint, train)

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / 'tests' / 'engine_toy.py'
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))
from tests.engine_toy import Crash, Toy, ToyData, config  # noqa: E402


def run(*args, **kw):
    command = [sys.executable, str(TOY), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, **kw)


def params(path):
    return torch.load(path, weights_only=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def torchrun(*args, env=None, timeout=120):
    "`torchrun --nproc_per_node 2 ARGS` on a free port, with one thread per process."
    port = str(free_port())
    command = [str(BIN / 'torchrun'), '--nproc_per_node', '2', '--master_port', port, *map(str, args)]
    environment = os.environ | {'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)} | (env or {})
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=timeout, env=environment)


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def state(method) -> dict:
    return {k: v.detach().cpu().clone() for k, v in method.state_dict().items()}


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    "The final parameters of an uninterrupted 8-step toy run (2 stages, a checkpoint every step)."
    out = tmp_path_factory.mktemp('reference')
    return state(train(config(out / 'run'), datasets={'train': ToyData()}))


# ---- exact resume ------------------------------------------------------------------------------------
def test_kill_and_resume_is_exact(tmp_path):
    full = run(tmp_path / 'full', '--steps', 8)
    assert full.returncode == 0, full.stderr
    killed = run(tmp_path / 'part', '--steps', 8, '--kill-at', 3)          # in stage 1, after its milestone
    assert killed.returncode == -9, killed.stderr                             # SIGKILL
    assert load_checkpoint(tmp_path / 'part', 'toy')['step'] == 3
    resumed = run(tmp_path / 'part', '--steps', 8, '--resume')
    assert resumed.returncode == 0, resumed.stderr
    a, b = params(tmp_path / 'full' / 'params_rank0.pt'), params(tmp_path / 'part' / 'params_rank0.pt')
    assert_same(a, b)
    # killed again in stage 2, resumed again
    killed = run(tmp_path / 'part2', '--steps', 8, '--kill-at', 6)
    assert killed.returncode == -9
    assert run(tmp_path / 'part2', '--steps', 8, '--resume').returncode == 0
    assert_same(a, params(tmp_path / 'part2' / 'params_rank0.pt'))


@pytest.mark.parametrize('crash_at, saved', [(4, (3, 0, 3)), (5, (4, 1, 0))])
def test_resume_at_a_stage_boundary_is_exact(tmp_path, reference, crash_at, saved):
    "Step 4 ends stage 1: its checkpoint has stage_step 0 and must still restore the RNG states (dropout)."
    cfg = config(tmp_path / 'run')
    with pytest.raises(KeyboardInterrupt):
        train(cfg, datasets={'train': ToyData()}, callbacks=[Crash(crash_at)])
    checkpoint = load_checkpoint(tmp_path / 'run')
    assert (checkpoint['step'], checkpoint['stage'], checkpoint['stage_step']) == saved
    assert_same(reference, state(train(cfg, datasets={'train': ToyData()})))


# ---- one entry point -----------------------------------------------------------------------------------
def test_train_from_dict_yaml_and_config(tmp_path, reference):
    data = Toy.default_config() | {'out': str(tmp_path / 'a')}
    method = train(data)                                                   # a dict; datasets from the config
    assert not method.training
    assert_same(reference, state(method))
    (tmp_path / 'b.yaml').write_text(yaml.safe_dump(data | {'out': str(tmp_path / 'b')}))
    assert_same(reference, state(depthnb.train(tmp_path / 'b.yaml')))    # a YAML path, through the package
    assert load_checkpoint(tmp_path / 'b')['step'] == 8
    # resume='auto' on a finished run: nothing left to do, the same parameters
    log_lines = len((tmp_path / 'b' / 'log.jsonl').read_text().splitlines())
    assert_same(reference, state(train(tmp_path / 'b.yaml')))
    assert len((tmp_path / 'b' / 'log.jsonl').read_text().splitlines()) == log_lines
    # resume=False starts over (and a prev.pt of the earlier run is no fallback for the new one)
    cfg = config(tmp_path / 'b', steps=2)
    method = train(cfg, resume=False, datasets={'train': ToyData()})
    assert load_checkpoint(tmp_path / 'b')['step'] == 2
    assert load_checkpoint(tmp_path / 'b' / PREVIOUS)['step'] == 1
    with pytest.raises(ConfigError, match='method_args do not fit Toy'):
        train(data | {'method_args': {'depth': 3}})
    with pytest.raises(ConfigError, match='config.method is empty'):
        train({'out': str(tmp_path / 'c')})


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_fit_start(self, trainer): self.events.append(('fit_start', trainer.step))
    def on_stage_start(self, trainer, stage): self.events.append(('stage_start', stage.name))
    def on_step_end(self, trainer, losses): self.events.append(('step', trainer.step, sorted(trainer.batch)))
    def on_stage_end(self, trainer, stage): self.events.append(('stage_end', stage.name, trainer.stage_index))
    def on_fit_end(self, trainer): self.events.append(('fit_end', trainer.step))


class TwoSources(Toy):
    "Records the batch it gets: dataset name → collated batch."
    def __init__(self, width: int = 4):
        super().__init__(width)
        self.seen = []

    def losses(self, batch, stage):
        self.seen.append({name: tuple(b['left'].shape) for name, b in batch.items()})
        assert 'source' not in batch
        return {f'l1/{name}': (self.b(torch.relu(self.a(b['left']))) - b['disp_l']).abs().mean()
                for name, b in batch.items()}


@pytest.mark.parametrize('mix', ['alternate', 'joint'])
def test_batch_is_keyed_by_dataset(tmp_path, mix):
    cfg = from_dict(TrainConfig, dict(method='tests.test_engine:TwoSources', out=str(tmp_path), batch_size=2,
                                      progress=False, tensorboard=False, log_every=1, ckpt_every=0,
                                      stages=[dict(steps=4, lr=1e-2, data=['flying', 'street'], mix=mix)]))
    m = TwoSources()
    recorder = Recorder()
    Trainer(m, {'flying': ToyData(), 'street': ToyData()}, cfg, callbacks=[recorder]).fit()
    if mix == 'alternate':
        assert [list(s) for s in m.seen] == [['flying'], ['street'], ['flying'], ['street']]
    else:
        assert [list(s) for s in m.seen] == [['flying', 'street']] * 4
    assert all(shape == (2, 3, 8, 8) for s in m.seen for shape in s.values())
    steps = [e for e in recorder.events if e[0] == 'step']
    assert [e[2] for e in steps] == [sorted(s) for s in m.seen]           # trainer.batch is what losses got
    assert recorder.events[0] == ('fit_start', 0) and recorder.events[1] == ('stage_start', 'train')
    assert recorder.events[-2:] == [('stage_end', 'train', 1), ('fit_end', 4)]


def test_evaluation_callback_tensorboard_and_images(tmp_path):
    "eval_every runs the evaluate callable; losses, metrics and images reach log.jsonl and TensorBoard."
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    class WithVisuals(Toy):
        def visuals(self, batch):
            (_, b), = batch.items()
            return {'pred': self.infer(b['left'][:1])['disp'][0].expand(3, -1, -1).sigmoid()}

    cfg = from_dict(TrainConfig, dict(method='tests.engine_toy:Toy', out=str(tmp_path), batch_size=4,
                                      progress=False, tensorboard=True, log_every=1, image_every=2,
                                      eval_every=2, ckpt_every=0, stages=[dict(steps=4, lr=1e-2)]))
    calls = []

    def evaluate(method, trainer):
        calls.append(trainer.step)
        assert not method.training
        torch.rand(100)                                               # evaluation keeps the training's RNG
        return {'mae': 1.0 / trainer.step, 'nested': {'x': 2}}

    torch.manual_seed(0)
    looked_at = WithVisuals()
    hist = Trainer(looked_at, {'train': ToyData()}, cfg, evaluate=evaluate).fit()
    assert calls == [2, 4]
    assert [h['eval/mae'] for h in hist if 'eval/mae' in h] == [0.5, 0.25]
    assert all(h['eval/nested/x'] == 2 for h in hist if 'eval/mae' in h)
    acc = EventAccumulator(str(tmp_path / 'tb'), size_guidance={'images': 10})
    acc.Reload()
    assert {'loss', 'loss/l1', 'eval/mae', 'lr'} <= set(acc.Tags()['scalars'])
    assert 'pred' in acc.Tags()['images'] and len(acc.Images('pred')) == 2
    lines = (tmp_path / 'log.jsonl').read_text().splitlines()
    assert len(lines) == 6                                               # 4 training records + 2 evaluations
    # the same run without images and evaluation ends with the same parameters
    torch.manual_seed(0)
    plain = WithVisuals()
    quiet = dataclasses.replace(cfg, out=str(tmp_path / 'plain'), image_every=0, eval_every=0)
    Trainer(plain, {'train': ToyData()}, quiet).fit()
    assert_same(state(looked_at), state(plain))


def test_eval_data_calls_depthnb_evaluation(tmp_path, monkeypatch):
    "cfg.eval_data → depthnb.evaluation.evaluate(method, dataset, metrics, n=…) → eval/<data>/<metric>/<key>."
    import types
    calls = []

    def evaluate(method, dataset, metrics=('disparity',), n=None, batch_size=4, workers=0):
        calls.append((type(dataset).__name__, list(metrics), n, batch_size))
        assert not method.training
        return {metric: {'epe': 1.5, 'samples': n} for metric in metrics}

    monkeypatch.setitem(sys.modules, 'depthnb.evaluation', types.SimpleNamespace(evaluate=evaluate))
    cfg = from_dict(TrainConfig, Toy.default_config(steps=4) | dict(
        out=str(tmp_path), eval_every=2, eval_data=['val'], eval_metrics=['disparity', 'depth'], eval_n=3,
        data={'train': {'type': 'tests.engine_toy:ToyData'}, 'val': {'type': 'tests.engine_toy:ToyData'}}))
    train(cfg)
    assert calls == [('ToyData', ['disparity', 'depth'], 3, 4)] * 2
    records = [yaml.safe_load(line) for line in (tmp_path / 'log.jsonl').read_text().splitlines()]
    evaluations = [r for r in records if 'eval/val/disparity/epe' in r]
    assert [r['step'] for r in evaluations] == [2, 4]
    assert evaluations[0]['eval/val/depth/samples'] == 3
    with pytest.raises(ConfigError, match="eval_data names 'test'"):
        from_dict(TrainConfig, Toy.default_config() | dict(eval_data=['test']))


def test_eval_data_with_the_real_evaluation(tmp_path):
    "The same through depthnb.evaluation itself: disparity metrics of the toy on a held-out dataset."
    cfg = from_dict(TrainConfig, Toy.default_config(steps=2) | dict(
        out=str(tmp_path), eval_every=1, eval_data=['val'], eval_n=5,
        data={'train': {'type': 'tests.engine_toy:ToyData'}, 'val': {'type': 'tests.engine_toy:ToyData'}}))
    train(cfg)
    records = [yaml.safe_load(line) for line in (tmp_path / 'log.jsonl').read_text().splitlines()]
    evaluations = [r for r in records if 'eval/val/disparity/epe' in r]
    assert [r['step'] for r in evaluations] == [1, 2]
    assert all(r['eval/val/samples'] == 5 and r['eval/val/disparity/epe'] > 0 for r in evaluations)


# ---- damaged checkpoints -------------------------------------------------------------------------------
def finished_run(tmp_path, name='run') -> Path:
    "A finished toy run: last.pt at step 8, prev.pt at step 7."
    folder = tmp_path / name
    train(config(folder), datasets={'train': ToyData()})
    return folder


def damaged_copies(original: bytes, rng: random.Random):
    "Truncations at random bytes (and at 0), and single flipped bytes at random places."
    for cut in [0] + sorted(rng.sample(range(1, len(original)), 4)):
        yield f'cut at {cut}', original[:cut]
    for _ in range(5):
        at = rng.randrange(len(original))
        data = bytearray(original)
        data[at] ^= rng.randrange(1, 256)
        yield f'byte {at} flipped', bytes(data)


def readable(path: Path) -> bool:
    try:
        load_checkpoint(path)
        return True
    except CheckpointError:
        return False


def test_damaged_last_checkpoint_falls_back_to_previous(tmp_path, reference):
    "A finished and an interrupted run: a damaged last.pt → prev.pt (with a warning), same final parameters."
    finished = finished_run(tmp_path, 'finished')
    with pytest.raises(KeyboardInterrupt):
        train(config(tmp_path / 'interrupted'), datasets={'train': ToyData()}, callbacks=[Crash(6)])
    rng = random.Random(20240607)
    fallbacks = 0
    for source in (finished, tmp_path / 'interrupted'):
        for what, damaged in damaged_copies((source / LAST).read_bytes(), rng):
            folder = tmp_path / 'damaged'
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(source, folder)
            (folder / LAST).write_bytes(damaged)
            cfg = config(folder)
            if readable(folder / LAST):                   # a flip where it changes nothing that is read
                method = train(cfg, datasets={'train': ToyData()})
            else:
                fallbacks += 1
                says_so = r'damaged/last\.pt.*falling back.*damaged/prev\.pt'
                with pytest.warns(CheckpointWarning, match=says_so):
                    method = train(cfg, datasets={'train': ToyData()})
            assert_same(reference, state(method)), f'{source.name}: {what}'
            assert load_checkpoint(folder)['step'] == 8
    assert fallbacks >= 14                                # every cut, and most flips, are caught


def test_cli_resume_falls_back_and_says_so(tmp_path, reference, capsys):
    from depthnb.cli import main
    folder = finished_run(tmp_path)
    data = (folder / LAST).read_bytes()
    (folder / LAST).write_bytes(data[:len(data) // 3])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert main(['train', '--resume', str(folder)]) == 0
    messages = [str(w.message) for w in caught if issubclass(w.category, CheckpointWarning)]
    assert len(messages) == 1 and 'run/prev.pt' in messages[0]
    assert 'run/last.pt is not a readable checkpoint' in messages[0]
    assert_same(reference, load_checkpoint(folder)['model'])
    # both damaged: a clear error naming both files
    (folder / LAST).write_bytes(b'')
    (folder / PREVIOUS).write_bytes(data[:100])
    assert main(['train', '--resume', str(folder)]) == 2
    err = capsys.readouterr().err
    assert 'run/last.pt is not a readable checkpoint' in err
    assert 'run/prev.pt is not a readable checkpoint' in err


def test_full_disk_stops_with_a_clear_error_and_keeps_the_checkpoints(tmp_path, reference, monkeypatch):
    real_save = torch.save
    saves = []

    def fails_on_the_fourth(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) == 4:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, 'save', fails_on_the_fourth)
    folder = tmp_path / 'run'
    clear = r'cannot write checkpoint .*run/last\.pt: no space left on device'
    with pytest.raises(CheckpointError, match=clear) as e:
        train(config(folder), datasets={'train': ToyData()})
    assert 'the last good checkpoint is' in str(e.value) and isinstance(e.value, DepthnbInputError)
    monkeypatch.setattr(torch, 'save', real_save)
    assert load_checkpoint(folder / LAST)['step'] == 3 and load_checkpoint(folder / PREVIOUS)['step'] == 2
    assert not [p for p in folder.iterdir() if p.name.endswith('.tmp')]
    assert_same(reference, state(train(config(folder), datasets={'train': ToyData()})))


# ---- any bytes: only input errors --------------------------------------------------------------------
def test_load_checkpoint_raises_only_checkpoint_errors(tmp_path):
    folder = finished_run(tmp_path)
    original = (folder / LAST).read_bytes()
    rng = random.Random(7)
    path = tmp_path / 'x.pt'
    candidates = [b'', b'PK\x03\x04', bytes(rng.randrange(256) for _ in range(3000)), b'\x80\x02}q\x00.']
    for _ in range(60):
        data = bytearray(original)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        candidates.append(bytes(data[:rng.randrange(len(data) + 1)] if rng.random() < 0.3 else data))
    outcomes = {'ok': 0, 'error': 0}
    for data in candidates:
        path.write_bytes(data)
        try:
            checkpoint = load_checkpoint(path, 'toy')
            assert checkpoint['step'] == 8
            outcomes['ok'] += 1
        except CheckpointError:
            outcomes['error'] += 1
    assert outcomes['error'] > 30
    for weird in (tmp_path / 'nothing', tmp_path, 'a\x00b'):
        with pytest.raises(CheckpointError):
            load_checkpoint(weird)


def test_config_files_raise_only_config_errors(tmp_path):
    nasty = {
        'deep': b'a: ' + b'[' * 3000 + b']' * 3000,
        'deep_mapping': b'method_args: ' + b'{a: ' * 200 + b'1' + b'}' * 200,
        'huge_int': b'seed: ' + b'9' * 5000,
        'big_int': b'seed: ' + b'9' * 40,
        'huge_float': b'stages: [{lr: 1e999}]',
        'nan': b'stages: [{lr: .nan}]',
        'self_alias': b'method_args: &a {x: [*a]}\n',
        'laughs': b'a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n'
                  b'c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\n'
                  b'method_args: {d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]}\n'
                  b'data: {t: {args: {e: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]}}}\n',
        'python_tag': b'method: !!python/object/apply:os.system ["true"]\n',
        'list': b'- 1\n- 2\n',
        'string': b'just text',
        'binary': bytes(range(256)),
        'latin1': 'out: caf\xe9'.encode('latin-1'),
        'date': b'out: 2024-13-45\n',
        'int_keys': b'1: 2\n',
        'set': b'method_args: !!set {a, b}\n',
        'bytes': b'method_args: {x: !!binary aGVsbG8=}\n',
        'tabs': b'a:\n\t- 1\n',
    }
    rng = random.Random(3)
    good = yaml.safe_dump(Toy.default_config()).encode()
    for i in range(40):
        data = bytearray(good)
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.choice(b'[]{}:-&*!,\'"\n 0123456789ax\x00\xff')
        nasty[f'mutated{i}'] = bytes(data)
    for name, content in nasty.items():
        path = tmp_path / f'{name}.yaml'
        path.write_bytes(content)
        loaders = (lambda: load_config({'method': 'toy'}, path), lambda: read_yaml(path), lambda: train(path))
        for load in loaders:
            try:
                load()
            except DepthnbInputError:
                pass
            except Exception as e:                      # noqa: BLE001 - the point: nothing else may escape
                raise AssertionError(f'{name}: {type(e).__name__}: {e}') from None
    with pytest.raises(ConfigError, match='huge_int'):
        load_config({'method': 'toy'}, tmp_path / 'huge_int.yaml')
    with pytest.raises(ConfigError, match='nested deeper than 32'):
        load_config({'method': 'toy'}, tmp_path / 'deep_mapping.yaml')


def test_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        load_config({'method': 'toy'}, overrides=['batch_sise=3'])
    bad = tmp_path / 'bad.yaml'
    bad.write_text('stages:\n  - name: a\n    lr: fast\n')
    with pytest.raises(ConfigError, match=r'stages\[0\]\.lr'):
        load_config({'method': 'toy'}, bad)
    with pytest.raises(ConfigError, match='not found'):
        load_config({'method': 'toy'}, tmp_path / 'missing.yaml')
    with pytest.raises(ConfigError, match='not a mapping or a list'):
        load_config({'method': 'toy'}, overrides=['seed.x=1'])
    with pytest.raises(ConfigError, match='joint mode'):
        from_dict(TrainConfig, {'stages': [{'data': ['a', 'a'], 'mix': 'joint'}]})
    # a dataset path that does not exist
    from depthnb.engine import build_datasets
    kitti = {'type': 'KittiRaw', 'args': {'root': str(tmp_path / 'no_kitti')}}
    cfg = from_dict(TrainConfig, {'data': {'train': kitti}})
    with pytest.raises(DepthnbInputError, match='no_kitti'):
        build_datasets(cfg)
    # a checkpoint of another model
    save_checkpoint(tmp_path / 'other.pt', dict(method='dispnet-supervised', model={}))
    with pytest.raises(CheckpointError, match="checkpoint of 'dispnet-supervised', not of 'toy'"):
        Trainer(Toy(), {'train': ToyData()}, config(tmp_path / 'x')).fit(resume=tmp_path / 'other.pt')


# ---- DDP ------------------------------------------------------------------------------------------------
def test_torchrun_ranks_hold_identical_parameters(tmp_path):
    r = torchrun(TOY, tmp_path / 'ddp', '--steps', '6', '--batch', '2')
    assert r.returncode == 0, r.stderr[-3000:]
    r0, r1 = params(tmp_path / 'ddp' / 'params_rank0.pt'), params(tmp_path / 'ddp' / 'params_rank1.pt')
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f'{k} differs between the ranks'
    assert load_checkpoint(tmp_path / 'ddp', 'toy')['step'] == 6
    assert len(load_checkpoint(tmp_path / 'ddp', 'toy')['rng']) == 2           # each rank's RNG state is kept


def test_torchrun_matches_global_batch_without_randomness(tmp_path):
    "With the dropout off, 2 ranks × batch 2 equal 1 process × batch 4 within fp tolerance."
    script = tmp_path / 'nodrop.py'
    script.write_text(TOY.read_text().replace('dropout: float = 0.2', 'dropout: float = 0.0'))
    r = torchrun(script, tmp_path / 'ddp', '--steps', '6', '--batch', '2')
    assert r.returncode == 0, r.stderr[-3000:]
    s = subprocess.run([sys.executable, str(script), str(tmp_path / 'one'), '--steps', '6', '--batch', '4'],
                       capture_output=True, text=True, cwd=ROOT)
    assert s.returncode == 0, s.stderr
    r0, one = params(tmp_path / 'ddp' / 'params_rank0.pt'), params(tmp_path / 'one' / 'params_rank0.pt')
    for k in r0:
        torch.testing.assert_close(r0[k], one[k], atol=1e-5, rtol=1e-5)


def test_torchrun_kill9_one_rank_then_resume_is_exact(tmp_path):
    "`depthnb train` on 2 ranks, one SIGKILLed mid-step at a random step: the job stops; --resume is exact."
    rng = random.Random(int(os.environ.get('DEPTHNB_KILL_SEED', '11')))
    rank, step = rng.randrange(2), rng.randrange(2, 8)
    train_args = [BIN / 'depthnb', 'train', '--method', 'tests.engine_toy:Toy', '--set', 'batch_size=2']
    full = torchrun(*train_args, '--set', f'out={tmp_path / "full"}')
    assert full.returncode == 0, full.stderr[-3000:]
    started = time.time()
    kill = {'DEPTHNB_TOY_KILL': f'{rank}:{step}'}
    killed = torchrun(*train_args, '--set', f'out={tmp_path / "part"}', env=kill)
    assert killed.returncode != 0, f'rank {rank} killed at step {step}, yet the job succeeded'
    assert time.time() - started < 90
    assert 'Signals.SIGKILL' in killed.stderr or 'exitcode  : -9' in killed.stderr, killed.stderr[-3000:]
    assert load_checkpoint(tmp_path / 'part')['step'] < 8
    resumed = torchrun(BIN / 'depthnb', 'train', '--resume', tmp_path / 'part')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = load_checkpoint(tmp_path / 'part')
    assert final['step'] == 8, f'rank {rank} killed at step {step}'
    assert_same(load_checkpoint(tmp_path / 'full')['model'], final['model'])
