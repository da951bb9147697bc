"""A tiny method and dataset for the engine tests, runnable as a script (also under torchrun).

    python tests/engine_toy.py OUT [--steps N] [--batch B] [--kill-at K] [--resume]
"""
import argparse
import os
import signal
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from depthnb.engine import Method, Trainer, from_dict, TrainConfig  # noqa: E402


class ToyData(torch.utils.data.Dataset):
    def __len__(self): return 24
    def __getitem__(self, i):
        x = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(i))
        return {'left': x, 'disp_l': x.mean(0, keepdim=True) * 4}


class Toy(Method):
    "Two convolutions and a dropout (so the RNG state matters for exact resume); no batch norm (DDP-exact)."
    name = 'toy'
    def __init__(self, width: int = 4):
        super().__init__(width=width)
        self.a = nn.Conv2d(3, width, 3, padding=1); self.drop = nn.Dropout(0.2); self.b = nn.Conv2d(width, 1, 3, padding=1)
    def losses(self, batch, stage):
        pred = self.b(self.drop(torch.relu(self.a(batch['left']))))
        return {'l1': (pred - batch['disp_l']).abs().mean()}
    def infer(self, left, right=None):
        return {'disp': self.b(torch.relu(self.a(left)))}


def config(out, steps=8, batch=4, ckpt_every=1):
    return from_dict(TrainConfig, dict(method='tests.engine_toy:Toy', out=str(out), batch_size=batch, progress=False,
                                       tensorboard=False, log_every=1, ckpt_every=ckpt_every, seed=0,
                                       stages=[dict(name='all', steps=steps - steps // 2, lr=1e-2, milestones=[2]),
                                               dict(name='head', steps=steps // 2, lr=1e-2, train=['b.'])]))


class KillAt:
    def __init__(self, k): self.k = k
    def on_step_end(self, trainer, losses):
        if trainer.step == self.k:
            trainer.save()
            os.kill(os.getpid(), signal.SIGKILL)              # no clean-up, no finally: like a crash or a pre-empted job


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('out'); ap.add_argument('--steps', type=int, default=8); ap.add_argument('--batch', type=int, default=4)
    ap.add_argument('--kill-at', type=int, default=None); ap.add_argument('--resume', action='store_true')
    a = ap.parse_args()
    torch.manual_seed(0)
    m = Toy()
    tr = Trainer(m, {'train': ToyData()}, config(a.out, a.steps, a.batch), callbacks=[KillAt(a.kill_at)] if a.kill_at else [])
    tr.fit(resume=a.out if a.resume else None)
    torch.save({k: v.detach().cpu() for k, v in m.state_dict().items()}, Path(a.out) / f'params_rank{tr.rank}.pt')


if __name__ == '__main__':
    main()
