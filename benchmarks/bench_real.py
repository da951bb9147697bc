"""Benchmark: learned stereo against OpenCV SGBM on the real Middlebury Motorcycle pair (issue 10).

For the pair at 1/4 and 1/2 of its size, EPE (px) and D1 of
- `sgbm`: OpenCV StereoSGBM as a user runs it, holes filled from the nearer valid pixel of the row;
- `demo`: the run of `make demo` (demo_out/run, or --demo), and `demo_adapted`: the same after `depthnb adapt`
  on the pair itself (no labels, at most --adapt-seconds s);
- `best`: the run of the best recipe (--best; experiments/real.py trains it), adapted as its recipe.json says,
  with its training time and recipe.
A run that is not there is recorded with the reason. All through `depthnb.evaluate`; the recipe is
`depthnb.experiments.real.benchmark`. Writes benchmarks/results/real.json.

    python benchmarks/bench_real.py [--demo demo_out/run] [--best runs/real/best] [--threads 2]
"""
from __future__ import annotations

import argparse
import sys

import torch

from depthnb.experiments.real import ADAPT, benchmark


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--demo', default='demo_out/run', help='the run of make demo (default: demo_out/run)')
    p.add_argument('--best', default=None, help='the run of the best recipe (experiments/real.py)')
    p.add_argument('--out', default='benchmarks/results/real.json')
    p.add_argument('--work', default='runs/real/bench', help='where the adapted runs go')
    p.add_argument('--adapt-seconds', type=float, default=ADAPT['seconds'])
    p.add_argument('--adapt-steps', type=int, default=ADAPT['steps'])
    p.add_argument('--adapt-lr', type=float, default=ADAPT['lr'])
    p.add_argument('--threads', type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    adapt = dict(seconds=a.adapt_seconds, steps=a.adapt_steps, lr=a.adapt_lr)
    command = 'python benchmarks/bench_real.py ' + ' '.join(sys.argv[1:] if argv is None else argv)
    results = benchmark(a.demo, a.best, a.out, a.work, adapt, command=command)
    print(f'wrote {a.out}')
    return results


if __name__ == '__main__':
    main()
