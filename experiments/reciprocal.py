#!/usr/bin/env python
"""The Reciprocal experiment (issue 11): StereoNet <-> SingleNet, the paper's claims measured in miniature.

    python experiments/reciprocal.py --threads 1                 # everything in one process
    python experiments/reciprocal.py --threads 1 --shard 0 2 &   # the same jobs split over two processes;
    python experiments/reciprocal.py --threads 1 --shard 1 2 &   # each writes results/reciprocal.json
    python experiments/reciprocal.py --threads 1 --variants stereonet stereonet_d --seeds 0   # a subset

Renders the Street training cache (stereo pairs; labels unused) and a held-out Street cache into --cache, then
trains the jobs that the --variants need with each seed (`depthnb.experiments.reciprocal.job_config`; run
folders in --runs, interrupted runs resume): one three-stage pipeline run per seed gives `stereonet`,
`singlenet_distilled`, `fused`, `stereonet_d` and every `fused_alpha_<α>`; `stereonet_pyramid`,
`singlenet_self`, `singlenet_sgm` are runs of their own; each `singlenet_alpha_<α>` (--sweep-seeds) is stage 2
alone, distilled from the pipeline run's stage-1 checkpoint of its seed (a process without that pipeline job
waits for it up to --wait seconds). Evaluates epe/d1 and the Eigen depth metrics on held-out Street (also per
region) and on the Motorcycle pair, with OpenCV SGBM beside them, and writes --out (results/reciprocal.json:
setup, variants -> set -> metric -> mean/std/seeds, configs) from every finished run, plus one config per
variant in --configs (`depthnb train --method reciprocal --config results/reciprocal/<variant>.yaml`).
The recipe is `depthnb.experiments.reciprocal.run_experiment`; this file only reads the command line.
"""
import argparse
import os
import sys
import time

import torch

from depthnb.experiments import reciprocal as recipe


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--variants', nargs='+', default=list(recipe.ALL_VARIANTS), choices=recipe.ALL_VARIANTS,
                   metavar='VARIANT', help='variants to produce (default: all)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2],
                   help='training seeds of the main variants')
    p.add_argument('--sweep-seeds', type=int, nargs='+', default=[0], help='training seeds of the α sweep')
    p.add_argument('--size', type=int, nargs=2, default=[64, 192], metavar=('H', 'W'))
    p.add_argument('--steps-stereonet', type=int, default=recipe.STEPS['stereonet'],
                   help='steps of stage 1 (StereoNet, also the pyramid variant)')
    p.add_argument('--steps-singlenet', type=int, default=recipe.STEPS['singlenet'],
                   help='steps of stage 2 (every SingleNet variant)')
    p.add_argument('--steps-stereonet-d', type=int, default=recipe.STEPS['stereonet_d'],
                   help='steps of stage 3 (StereoNet-D)')
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--lr', type=float, default=3e-4)
    p.add_argument('--n-train', type=int, default=600)
    p.add_argument('--n-eval', type=int, default=100)
    p.add_argument('--max-disp', type=float, default=32., help='StereoNet range (px at the training size)')
    p.add_argument('--shard', type=int, nargs=2, default=[0, 1], metavar=('INDEX', 'COUNT'),
                   help='run only this share of the jobs (start COUNT processes, INDEX 0 … COUNT-1)')
    p.add_argument('--wait', type=float, default=4 * 3600.,
                   help='seconds an α-sweep job waits for its teacher checkpoint from another process')
    p.add_argument('--cache', default='data_cache')
    p.add_argument('--runs', default='results/reciprocal/runs')
    p.add_argument('--configs', default='results/reciprocal')
    p.add_argument('--out', default='results/reciprocal.json')
    p.add_argument('--workers', type=int, default=1, help='rendering workers')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch decides)')
    return p.parse_args(argv)


def main(argv=None) -> dict:
    a = parse_args(argv)
    if a.threads:
        os.environ.setdefault('OMP_NUM_THREADS', str(a.threads))
        torch.set_num_threads(a.threads)
    args = sys.argv[1:] if argv is None else argv
    steps = {'stereonet': a.steps_stereonet, 'singlenet': a.steps_singlenet,
             'stereonet_d': a.steps_stereonet_d}
    t0 = time.time()
    results = recipe.run_experiment(
        variants=a.variants, seeds=a.seeds, sweep_seeds=a.sweep_seeds, size=tuple(a.size), steps=steps,
        batch_size=a.batch_size, lr=a.lr, n_train=a.n_train, n_eval=a.n_eval, max_disp=a.max_disp,
        shard=tuple(a.shard), wait=a.wait, cache=a.cache, runs=a.runs, configs=a.configs, out=a.out,
        workers=a.workers, command='python experiments/reciprocal.py ' + ' '.join(args))
    print(f'wrote {a.out} ({time.time() - t0:.0f} s)')
    return results


if __name__ == '__main__':
    main()
