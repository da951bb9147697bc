#!/usr/bin/env python
"""Issue 10: learned stereo against OpenCV SGBM on the real Motorcycle pair.

    python experiments/real.py                         # render, train the best recipe (≤ 55 min), benchmark
    python experiments/real.py --steps 200 --max-seconds 120 --out runs/real/smoke    # a short look
    python experiments/real.py --bench-only            # the table again, from the runs already trained

Renders realistic FlyingObjects (`depthnb.experiments.real.REALISTIC`) into --cache, trains the best recipe
(`depthnb.experiments.real.recipe_config`: a RealStereo StereoNet with a 96 px range, supervised, camera
augmentation) into --out for --steps steps or --max-seconds s, writes --out/recipe.json, then runs the
benchmark (`depthnb.experiments.real.benchmark`: SGBM, the demo run --demo before and after `depthnb adapt`,
the best run adapted to each pair) into benchmarks/results/real.json. The recipe lives in
`depthnb.experiments.real`; this file only reads the command line.
"""
import argparse
import sys

import torch

from depthnb.experiments import real as recipe


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='runs/real/best', help='the best run folder')
    p.add_argument('--size', type=int, nargs=2, default=[128, 192], metavar=('H', 'W'))
    p.add_argument('--n-train', type=int, default=2000, help='realistic FlyingObjects samples to render')
    p.add_argument('--steps', type=int, default=20000, help='at most this many steps (default: as many as fit)')
    p.add_argument('--max-seconds', type=float, default=3300., help='training time bound (default 55 min)')
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--lr', type=float, default=3e-4)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--cache', default='data_cache')
    p.add_argument('--workers', type=int, default=2, help='rendering workers')
    p.add_argument('--threads', type=int, default=2, help='torch CPU threads (default: 2)')
    p.add_argument('--demo', default='demo_out/run', help='the run of make demo')
    p.add_argument('--results', default='benchmarks/results/real.json')
    p.add_argument('--bench-only', action='store_true', help='train nothing: benchmark the runs there are')
    return p.parse_args(argv)


def main(argv=None) -> dict:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    command = 'python experiments/real.py ' + ' '.join(sys.argv[1:] if argv is None else argv)
    if not a.bench_only:
        recipe.train_best(a.out, tuple(a.size), a.n_train, a.steps, a.max_seconds, a.batch_size, a.lr, a.cache,
                          a.workers, a.seed, a.threads, command=command)
    return recipe.benchmark(a.demo, a.out, a.results, command=command)


if __name__ == '__main__':
    main()
