#!/usr/bin/env python
"""The SGDepth experiment (issue 13): Table 3's ablation chain measured on moving-object pixels.

    python experiments/sgdepth.py --threads 1                   # all 6 variants × 3 seeds in one process
    python experiments/sgdepth.py --threads 1 --shard 0 2 &     # the same work split over two processes;
    python experiments/sgdepth.py --threads 1 --shard 1 2 &     # each writes results/sgdepth.json when done

Renders Street video with dense traffic (`Street(traffic=3)`: the depth domain, labels unused), labelled
'city' Street (the segmentation domain) and held-out caches of both into --cache, trains the shared init
(`depth_only` from random weights, --pretrain-steps; shard 0 trains it, the other shards wait for it), then
each variant (`depth_only`, `multitask`, `gradscale`, `dc_mask`, `threshold`, `full`) from it with each seed
(`depthnb.experiments.sgdepth.experiment_config`, run folders in --runs; interrupted runs resume, finished
ones are kept), evaluates depth on held-out Street (all pixels and moving pixels only, median scaling) and
mIoU on both styles, and writes --out (results/sgdepth.json: setup, variants → set → metric → mean/std/seeds,
configs) from every finished run. --variants and --seeds pick a subset. The recipe is
`depthnb.experiments.sgdepth.run_experiment`; this file only reads the command line.
"""
import argparse
import os
import sys
import time

import torch

from depthnb.experiments import sgdepth as recipe
from depthnb.methods.sgdepth import VARIANTS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=VARIANTS)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--size', type=int, nargs=2, default=[64, 192], metavar=('H', 'W'))
    p.add_argument('--steps', type=int, default=400)
    p.add_argument('--batch-size', type=int, default=4,
                   help='video samples (and as many city samples) a step')
    p.add_argument('--lr', type=float, default=1e-4, help="Adam's learning rate of each run (the paper's)")
    p.add_argument('--pretrain-steps', type=int, default=recipe.PRETRAIN_STEPS,
                   help='steps of the shared init (depth_only from random weights); 0: every run from random')
    p.add_argument('--pretrain-lr', type=float, default=recipe.PRETRAIN_LR)
    p.add_argument('--n-train', type=int, default=240)
    p.add_argument('--n-eval', type=int, default=100)
    p.add_argument('--traffic', type=float, default=recipe.TRAFFIC, help='Street(traffic=…) of all the data')
    p.add_argument('--shard', type=int, nargs=2, default=[0, 1], metavar=('INDEX', 'COUNT'),
                   help='run only this share of the runs (start COUNT processes, INDEX 0 … COUNT-1)')
    p.add_argument('--cache', default='data_cache')
    p.add_argument('--runs', default='results/sgdepth/runs')
    p.add_argument('--configs', default='results/sgdepth')
    p.add_argument('--out', default='results/sgdepth.json')
    p.add_argument('--workers', type=int, default=1, help='rendering workers')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch decides)')
    return p.parse_args(argv)


def main(argv=None) -> dict:
    a = parse_args(argv)
    if a.threads:
        os.environ.setdefault('OMP_NUM_THREADS', str(a.threads))
        torch.set_num_threads(a.threads)
    args = sys.argv[1:] if argv is None else argv
    t0 = time.time()
    results = recipe.run_experiment(
        variants=a.variants, seeds=a.seeds, size=tuple(a.size), steps=a.steps, batch_size=a.batch_size,
        lr=a.lr, pretrain_steps=a.pretrain_steps, pretrain_lr=a.pretrain_lr, n_train=a.n_train,
        n_eval=a.n_eval, traffic=a.traffic, shard=tuple(a.shard), cache=a.cache,
        runs=a.runs, configs=a.configs, out=a.out, workers=a.workers,
        command='python experiments/sgdepth.py ' + ' '.join(args))
    print(f'wrote {a.out} ({time.time() - t0:.0f} s)')
    return results


if __name__ == '__main__':
    main()
