"""The engine: exact resume after a killed process, DDP with torchrun on CPU, and clear errors for bad input."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from depthnb.core import DepthnbInputError
from depthnb.engine import CheckpointError, ConfigError, Trainer, load_checkpoint, load_config, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / 'tests' / 'engine_toy.py'
sys.path.insert(0, str(ROOT))
from tests.engine_toy import Toy, ToyData, config  # noqa: E402


def run(*args, **kw):
    return subprocess.run([sys.executable, str(TOY), *map(str, args)], capture_output=True, text=True, cwd=ROOT, **kw)


def params(path):
    return torch.load(path, weights_only=True)


def test_kill_and_resume_is_exact(tmp_path):
    full = run(tmp_path / 'full', '--steps', 8)
    assert full.returncode == 0, full.stderr
    killed = run(tmp_path / 'part', '--steps', 8, '--kill-at', 3)          # inside stage 1, after its milestone
    assert killed.returncode == -9, killed.stderr                             # SIGKILL
    assert load_checkpoint(tmp_path / 'part', 'toy')['step'] == 3
    resumed = run(tmp_path / 'part', '--steps', 8, '--resume')
    assert resumed.returncode == 0, resumed.stderr
    a, b = params(tmp_path / 'full' / 'params_rank0.pt'), params(tmp_path / 'part' / 'params_rank0.pt')
    for k in a: assert torch.equal(a[k], b[k]), k
    # killed again in stage 2, resumed again
    killed = run(tmp_path / 'part2', '--steps', 8, '--kill-at', 6)
    assert killed.returncode == -9
    assert run(tmp_path / 'part2', '--steps', 8, '--resume').returncode == 0
    c = params(tmp_path / 'part2' / 'params_rank0.pt')
    for k in a: assert torch.equal(a[k], c[k]), k


def test_torchrun_ranks_hold_identical_parameters(tmp_path):
    torchrun = Path(sys.executable).with_name('torchrun')
    r = subprocess.run([str(torchrun), '--nproc_per_node', '2', '--master_port', '29531', str(TOY), str(tmp_path / 'ddp'),
                        '--steps', '6', '--batch', '2'], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    r0, r1 = params(tmp_path / 'ddp' / 'params_rank0.pt'), params(tmp_path / 'ddp' / 'params_rank1.pt')
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f'{k} differs between the ranks'
    assert load_checkpoint(tmp_path / 'ddp', 'toy')['step'] == 6
    assert len(load_checkpoint(tmp_path / 'ddp', 'toy')['rng']) == 2           # each rank's RNG state is kept


def test_torchrun_matches_global_batch_without_randomness(tmp_path):
    "With the dropout off, 2 ranks × batch 2 equal 1 process × batch 4 within fp tolerance."
    script = tmp_path / 'nodrop.py'
    script.write_text(TOY.read_text().replace('nn.Dropout(0.2)', 'nn.Dropout(0.0)'))
    torchrun = Path(sys.executable).with_name('torchrun')
    r = subprocess.run([str(torchrun), '--nproc_per_node', '2', '--master_port', '29532', str(script), str(tmp_path / 'ddp'),
                        '--steps', '6', '--batch', '2'], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    s = subprocess.run([sys.executable, str(script), str(tmp_path / 'one'), '--steps', '6', '--batch', '4'],
                       capture_output=True, text=True, cwd=ROOT)
    assert s.returncode == 0, s.stderr
    r0, one = params(tmp_path / 'ddp' / 'params_rank0.pt'), params(tmp_path / 'one' / 'params_rank0.pt')
    for k in r0: torch.testing.assert_close(r0[k], one[k], atol=1e-5, rtol=1e-5)


def test_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        load_config({'method': 'toy'}, overrides=['batch_sise=3'])
    bad = tmp_path / 'bad.yaml'; bad.write_text('stages:\n  - name: a\n    lr: fast\n')
    with pytest.raises(ConfigError, match=r'stages\[0\]\.lr'):
        load_config({'method': 'toy'}, bad)
    with pytest.raises(ConfigError, match='not found'):
        load_config({'method': 'toy'}, tmp_path / 'missing.yaml')
    # a dataset path that does not exist
    from depthnb.engine import build_datasets, from_dict, TrainConfig
    cfg = from_dict(TrainConfig, {'data': {'train': {'type': 'KittiRaw', 'args': {'root': str(tmp_path / 'no_kitti')}}}})
    with pytest.raises(DepthnbInputError, match='no_kitti'):
        build_datasets(cfg)
    # a checkpoint of another model
    save_checkpoint(tmp_path / 'other.pt', dict(method='dispnet-supervised', model={}))
    with pytest.raises(CheckpointError, match="checkpoint of 'dispnet-supervised', not of 'toy'"):
        Trainer(Toy(), {'train': ToyData()}, config(tmp_path / 'x')).fit(resume=tmp_path / 'other.pt')


def test_evaluation_callback_tensorboard_and_images(tmp_path):
    "eval_every runs the evaluate callback; losses, metrics and images reach log.jsonl and TensorBoard."
    from depthnb.engine import from_dict, TrainConfig
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    class WithVisuals(Toy):
        def visuals(self, batch):
            return {'pred': self.infer(batch['left'][:1])['disp'][0].expand(3, -1, -1).sigmoid()}

    cfg = from_dict(TrainConfig, dict(method='tests.engine_toy:Toy', out=str(tmp_path), batch_size=4, progress=False,
                                      tensorboard=True, log_every=1, image_every=2, eval_every=2, ckpt_every=0,
                                      stages=[dict(steps=4, lr=1e-2)]))
    calls = []
    def evaluate(method, trainer):
        calls.append(trainer.step)
        assert not method.training
        return {'mae': 1.0 / trainer.step}
    torch.manual_seed(0)
    hist = Trainer(WithVisuals(), {'train': ToyData()}, cfg, evaluate=evaluate).fit()
    assert calls == [2, 4]
    assert [h['eval/mae'] for h in hist if 'eval/mae' in h] == [0.5, 0.25]
    acc = EventAccumulator(str(tmp_path / 'tb'), size_guidance={'images': 10}); acc.Reload()
    assert {'loss', 'loss/l1', 'eval/mae', 'lr'} <= set(acc.Tags()['scalars'])
    assert 'pred' in acc.Tags()['images'] and len(acc.Images('pred')) == 2
    lines = (tmp_path / 'log.jsonl').read_text().splitlines()
    assert len(lines) == 6                                                   # 4 training records + 2 evaluations
