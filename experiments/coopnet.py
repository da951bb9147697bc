#!/usr/bin/env python
"""The CoopNet experiment (issue 14): Table 4 of the paper in miniature — baseline, adaptive minimum, CoopNet.

    python experiments/coopnet.py --threads 1 --workers 2 --render-only   # the video caches, both cores
    python experiments/coopnet.py --threads 1 --shard 0 2 &             # the 9 runs split over two processes;
    python experiments/coopnet.py --threads 1 --shard 1 2 &             # each writes results/coopnet.json when done

Renders the Street video caches (training, seed 0; held-out, seed 1000; denser traffic) into --cache, trains
the shared start (runs/init: `coopnet` in its burn-in for --pretrain-steps, DepthNet and PoseNet from --init, the
SGDepth experiment's shared init: run experiments/sgdepth.py first, or pass --init none), then each variant
(`baseline`, `adaptive_min`, `coopnet`) with each seed from it (`depthnb.experiments.coopnet.experiment_config`,
run folders in --runs, with the Δ histograms of
`depthnb.analysis.delta.DeltaHistograms` in TensorBoard and delta.jsonl; interrupted runs resume), evaluates
depth (Eigen metrics, median scaling) on all pixels (`street`) and on moving pixels (`street_moving`), flow EPE
on both and the snippet ATE, and writes --out (results/coopnet.json: setup, variants → set → metric →
mean/std/seeds, configs) from every finished run. --variants and --seeds choose a subset. The recipe is
`depthnb.experiments.coopnet.run_experiment`; this file only reads the command line.
"""
import argparse
import os
import sys
import time

import torch

from depthnb.experiments import coopnet as recipe
from depthnb.methods.coopnet import VARIANTS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=VARIANTS)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--size', type=int, nargs=2, default=[64, 192], metavar=('H', 'W'))
    p.add_argument('--steps', type=int, default=400)
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--lr', type=float, default=1e-4)
    p.add_argument('--n-train', type=int, default=240)
    p.add_argument('--n-eval', type=int, default=60)
    p.add_argument('--init', default='results/sgdepth/runs/init',
                   help="the finished run whose DepthNet and PoseNet every run starts from (SGDepth's shared "
                        "init); 'none': random weights")
    p.add_argument('--pretrain-steps', type=int, default=recipe.PRETRAIN_STEPS,
                   help='steps of the shared start (coopnet in its burn-in); 0: none')
    p.add_argument('--pretrain-lr', type=float, default=recipe.PRETRAIN_LR)
    p.add_argument('--burn-in', type=int, default=1, help='epochs before the CoopNet split')
    p.add_argument('--traffic', type=float, default=recipe.TRAFFIC, help='Street(traffic=…); 1: the default')
    p.add_argument('--shard', type=int, nargs=2, default=[0, 1], metavar=('INDEX', 'COUNT'),
                   help='run only this share of the runs (start COUNT processes, INDEX 0 … COUNT-1)')
    p.add_argument('--cache', default='data_cache')
    p.add_argument('--runs', default='results/coopnet/runs')
    p.add_argument('--configs', default='results/coopnet')
    p.add_argument('--out', default='results/coopnet.json')
    p.add_argument('--delta-every', type=int, default=10, help='steps between Δ histograms')
    p.add_argument('--render-only', action='store_true', help='render the caches and stop')
    p.add_argument('--workers', type=int, default=1, help='rendering workers')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch decides)')
    return p.parse_args(argv)


def main(argv=None) -> dict | None:
    a = parse_args(argv)
    if a.threads:
        os.environ.setdefault('OMP_NUM_THREADS', str(a.threads))
        torch.set_num_threads(a.threads)
    args = sys.argv[1:] if argv is None else argv
    t0 = time.time()
    results = recipe.run_experiment(
        variants=a.variants, seeds=a.seeds, size=tuple(a.size), steps=a.steps, batch_size=a.batch_size,
        lr=a.lr, n_train=a.n_train, n_eval=a.n_eval, burn_in=a.burn_in, traffic=a.traffic,
        shard=tuple(a.shard), init=None if a.init.lower() == 'none' else a.init,
        pretrain_steps=a.pretrain_steps, pretrain_lr=a.pretrain_lr, cache=a.cache, runs=a.runs,
        configs=a.configs, out=a.out, workers=a.workers,
        delta_every=a.delta_every, render_only=a.render_only,
        command='python experiments/coopnet.py ' + ' '.join(args))
    print(f'rendered the caches in {a.cache}' if results is None else f'wrote {a.out}',
          f'({time.time() - t0:.0f} s)')
    return results


if __name__ == '__main__':
    main()
