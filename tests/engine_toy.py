"""A tiny method and dataset for the engine tests, runnable as a script (also under torchrun).

    python tests/engine_toy.py OUT [--steps N] [--batch B] [--kill-at K] [--resume]

The method also trains from the command line, `depthnb train --method tests.engine_toy:Toy` (with this
repository on PYTHONPATH): its default config reads `ToyData`. With DEPTHNB_TOY_KILL='RANK:STEP' in the
environment, process RANK SIGKILLs itself in the middle of step STEP (after the forward pass), like a crash
or a pre-empted job; a worker that torchrun restarts (`--max-restarts`) does not crash again. `--set
method_args.dropout=0` switches the dropout off (for comparisons with one process and the global batch).
"""
import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from depthnb.engine import Callback, leave_process_group, Method, TrainConfig, from_dict, train  # noqa: E402


class ToyData(torch.utils.data.Dataset):
    def __len__(self):
        return 24

    def __getitem__(self, i):
        x = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(i))
        return {'left': x, 'disp_l': x.mean(0, keepdim=True) * 4}


def _kill_point():
    "(rank, step) from DEPTHNB_TOY_KILL, or None; None in a worker that torchrun restarted (it crashes once)."
    spec = os.environ.get('DEPTHNB_TOY_KILL')
    if not spec or int(os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')) > 0:
        return None
    rank, step = spec.split(':')
    return int(rank), int(step)


class Toy(Method):
    "Two convolutions and a dropout (so the RNG state matters for exact resume); no batch norm (DDP-exact)."
    name = 'toy'

    def __init__(self, width: int = 4, dropout: float = 0.2):
        super().__init__(width=width, dropout=dropout)
        self.a = nn.Conv2d(3, width, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.b = nn.Conv2d(width, 1, 3, padding=1)
        self.calls = 0

    def losses(self, batch, stage):
        (_, b), = batch.items()                                # one dataset: {'train': its collated batch}
        pred = self.b(self.drop(torch.relu(self.a(b['left']))))
        self.calls += 1
        if _kill_point() == (int(os.environ.get('RANK', '0')), self.calls):
            os.kill(os.getpid(), signal.SIGKILL)
        return {'l1': (pred - b['disp_l']).abs().mean()}

    def infer(self, left, right=None):
        return {'disp': self.b(torch.relu(self.a(left)))}

    @classmethod
    def default_config(cls, steps: int = 8, batch: int = 4, ckpt_every: int = 1) -> dict:
        return dict(method='tests.engine_toy:Toy', data={'train': {'type': 'tests.engine_toy:ToyData'}},
                    batch_size=batch, progress=False, tensorboard=False, log_every=1, ckpt_every=ckpt_every,
                    seed=0,
                    stages=[dict(name='all', steps=steps - steps // 2, lr=1e-2, milestones=[2]),
                            dict(name='head', steps=steps // 2, lr=1e-2, train=['b.'])])


def config(out, steps=8, batch=4, ckpt_every=1) -> TrainConfig:
    return from_dict(TrainConfig, Toy.default_config(steps, batch, ckpt_every) | {'out': str(out)})


class Crash(Callback):
    "Raise at step `k`, before that step's checkpoint: the state of step k is lost, as in a crash."
    def __init__(self, k):
        self.k = k

    def on_step_end(self, trainer, losses):
        if trainer.step == self.k:
            raise KeyboardInterrupt


class KillAt:
    "Save at step `k`, then SIGKILL this process (on every rank, or only on `rank`)."
    def __init__(self, k, rank=None):
        self.k = k
        self.rank = rank

    def on_step_end(self, trainer, losses):
        if trainer.step != self.k:
            return
        trainer.save()
        if self.rank is None or trainer.rank == self.rank:
            os.kill(os.getpid(), signal.SIGKILL)                # no clean-up, no finally: like a crash


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('out')
    ap.add_argument('--steps', type=int, default=8)
    ap.add_argument('--batch', type=int, default=4)
    ap.add_argument('--kill-at', type=int, default=None)
    ap.add_argument('--resume', action='store_true')
    a = ap.parse_args()
    callbacks = [KillAt(a.kill_at)] if a.kill_at else []
    cfg = dataclasses.replace(config(a.out, a.steps, a.batch), method='__main__:Toy')   # this file's Toy
    resume = a.out if a.resume else None
    method = train(cfg, resume=resume, callbacks=callbacks, datasets={'train': ToyData()})
    rank = int(os.environ.get('RANK', '0'))
    params = {k: v.detach().cpu() for k, v in method.state_dict().items()}
    torch.save(params, Path(a.out) / f'params_rank{rank}.pt')
    leave_process_group()


if __name__ == '__main__':
    main()
