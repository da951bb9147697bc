#!/usr/bin/env python
"""The DFR experiment (issue 5): the poster's table in miniature, reproducible by one command.

    python experiments/dfr.py                 # render caches, train supervised / semi_ph / semi_dfr, evaluate
    python experiments/dfr.py --variants semi_dfr --steps 500   # a shorter look at one variant

Renders FlyingObjects (labelled) and Street (unlabelled) training caches and held-out evaluation caches into
--cache, trains each variant from scratch with `depthnb.methods.dfr.experiment_config` (run folders in
--runs; an interrupted run resumes exactly), evaluates EPE/D1 per region on held-out FlyingObjects, held-out
Street and the real Motorcycle pair, and writes --out (results/dfr.json) with the setup and every config.
Each variant alone: `depthnb train --method dfr --config results/dfr/<variant>.yaml`.
"""
import argparse, json, os, platform, sys, time
from pathlib import Path

import torch
import yaml

from depthnb.core import seed_everything
from depthnb.engine import Trainer, TrainConfig, build_datasets, from_dict, to_dict
from depthnb.methods.dfr import (DFR, VARIANTS, evaluate_sets, evaluation_sets, experiment_config, motorcycle_factor_for,
                                 render_caches)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=VARIANTS)
    p.add_argument('--size', type=int, nargs=2, default=[64, 192], metavar=('H', 'W'))
    p.add_argument('--steps', type=int, default=3000)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--lr', type=float, default=3e-4)
    p.add_argument('--width', type=int, default=32)
    p.add_argument('--seed', type=int, default=0, help='training seed (initialisation and batch order; the data stay the same)')
    p.add_argument('--n-train', type=int, default=1200)
    p.add_argument('--n-eval', type=int, default=100)
    p.add_argument('--cache', default='data_cache')
    p.add_argument('--runs', default='results/dfr/runs')
    p.add_argument('--configs', default='results/dfr')
    p.add_argument('--out', default='results/dfr.json')
    p.add_argument('--workers', type=int, default=2, help='rendering workers')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch decides)')
    a = p.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    size = tuple(a.size)
    t0 = time.time()
    need = {'flying', 'flying_eval', 'street_eval'} | ({'street'} if set(a.variants) - {'supervised'} else set())
    render_caches(size, a.n_train, a.n_eval, a.cache, workers=a.workers, which=need)
    sets = evaluation_sets(size, a.n_eval, a.cache)
    out = Path(a.out)
    results = json.loads(out.read_text()) if out.is_file() else {'variants': {}, 'setup': {}}
    for v in a.variants:
        run = Path(a.runs) / v
        cfg_dict = experiment_config(v, run, size, a.steps, a.batch_size, a.lr, a.n_train, a.cache, a.width, a.seed)
        Path(a.configs).mkdir(parents=True, exist_ok=True)
        (Path(a.configs) / f'{v}.yaml').write_text(yaml.safe_dump(cfg_dict, sort_keys=False))
        cfg = from_dict(TrainConfig, cfg_dict)
        seed_everything(cfg.seed)
        method = DFR(**cfg.method_args)
        resume = run if (run / 'last.pt').is_file() else None
        Trainer(method, build_datasets(cfg), cfg).fit(resume=resume)
        log = (run / 'log.jsonl').read_text().splitlines()
        train_s = json.loads(log[-1])['time'] if log else float('nan')   # training seconds (an earlier, finished run: its own)
        method.eval()
        r = evaluate_sets(method, sets)
        results['variants'][v] = r | {'train_seconds': round(train_s, 1), 'config': cfg_dict}
        print(f'{v}: ' + ', '.join(f"{k} EPE {x['epe']:.3f} D1 {x['d1']:.4f}" for k, x in r.items()), flush=True)
        results['setup'] = dict(size=list(size), seed=a.seed, steps=a.steps, batch_size=a.batch_size, lr=a.lr, width=a.width,
                                n_train=a.n_train, n_eval=a.n_eval, eval_seed=1000, motorcycle_factor=motorcycle_factor_for(size[1]),
                                labelled='FlyingObjects (seed 0, cached)', unlabelled='Street (seed 0, cached; labels unused)',
                                device=str(next(method.parameters()).device), torch=torch.__version__,
                                threads=torch.get_num_threads(), python=platform.python_version(),
                                command='python experiments/dfr.py ' + ' '.join(sys.argv[1:] if argv is None else argv))
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + '.tmp'); tmp.write_text(json.dumps(results, indent=1) + '\n'); os.replace(tmp, out)
    print(f'wrote {out} ({time.time() - t0:.0f} s)')


if __name__ == '__main__':
    main()
