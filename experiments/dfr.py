#!/usr/bin/env python
"""The DFR experiment (issue 5): the poster's table in miniature, reproducible by one command per seed.

    python experiments/dfr.py --steps 2000              # render caches, train supervised / semi_ph / semi_dfr
    python experiments/dfr.py --steps 2000 --seed 1     # another training seed: joins results/dfr.json
    python experiments/dfr.py --variants semi_dfr --steps 500   # a shorter look at one variant
    python experiments/dfr.py --merge results/dfr_seed2.json    # add an older one-seed file, rewrite --out

Renders FlyingObjects (labelled) and Street (unlabelled) training caches and held-out evaluation caches into
--cache, trains each variant from scratch with training seed --seed
(`depthnb.experiments.dfr.experiment_config`, run folders in --runs; an interrupted run resumes exactly),
evaluates EPE/D1 per region on held-out FlyingObjects, held-out Street and the real Motorcycle pair, keeps
the seed's results in --seeds-dir/seed<k>.json and rewrites --out (results/dfr.json: setup, variants → eval
set → metric → mean/std/seeds over every seed file, configs). Each variant alone:
`depthnb train --method dfr --config results/dfr/<variant>.yaml`.
The recipe is `depthnb.experiments.dfr.run_experiment`; this file only reads the command line.
"""
import argparse
import sys
import time

import torch

from depthnb.experiments import dfr as recipe
from depthnb.methods.dfr import VARIANTS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=VARIANTS)
    p.add_argument('--size', type=int, nargs=2, default=[64, 192], metavar=('H', 'W'))
    p.add_argument('--steps', type=int, default=3000)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--lr', type=float, default=3e-4)
    p.add_argument('--width', type=int, default=32)
    p.add_argument('--seed', type=int, default=0,
                   help='training seed (initialisation and batch order; the data stay the same)')
    p.add_argument('--n-train', type=int, default=1200)
    p.add_argument('--n-eval', type=int, default=100)
    p.add_argument('--cache', default='data_cache')
    p.add_argument('--runs', default=None,
                   help='run folders (default: results/dfr/runs for seed 0, results/dfr/runs-seed<k> else)')
    p.add_argument('--configs', default=None,
                   help='config folder (default: results/dfr for seed 0, results/dfr/seed<k> else)')
    p.add_argument('--seeds-dir', default='results/dfr/seeds', help='one results file per training seed')
    p.add_argument('--out', default='results/dfr.json', help='the merged results of every seed file')
    p.add_argument('--merge', nargs='*', default=None, metavar='FILE',
                   help='train nothing: copy these one-seed results files into --seeds-dir, rewrite --out')
    p.add_argument('--workers', type=int, default=2, help='rendering workers')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch decides)')
    return p.parse_args(argv)


def main(argv=None) -> dict:
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    args = sys.argv[1:] if argv is None else argv
    if a.merge is not None:
        for path in a.merge:
            print(f'{path} → {recipe.import_seed_file(path, a.seeds_dir)}')
        results = recipe.merge_results(a.seeds_dir, a.out)
        print(f"wrote {a.out} (seeds {results['setup']['seeds']}, missing {results['setup']['missing']})")
        return results
    t0 = time.time()
    results = recipe.run_experiment(
        variants=a.variants, size=tuple(a.size), steps=a.steps, batch_size=a.batch_size, lr=a.lr,
        width=a.width, seed=a.seed, n_train=a.n_train, n_eval=a.n_eval, cache=a.cache, runs=a.runs,
        configs=a.configs, seeds_dir=a.seeds_dir, out=a.out, workers=a.workers,
        command='python experiments/dfr.py ' + ' '.join(args))
    print(f'wrote {a.out} ({time.time() - t0:.0f} s)')
    return results


if __name__ == '__main__':
    main()
