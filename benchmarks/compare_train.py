"""Before/after of the training step: `bench_train.py` run alternately against an older depthnb and this one.

The older library is a folder holding its `depthnb` package, e.g. the last commit's:

    mkdir -p /tmp/before && git archive HEAD depthnb | tar -x -C /tmp/before
    python benchmarks/compare_train.py --before /tmp/before [--pairs 2] [--threads 1] [--repeats 7]

Each run measures both depthnb and monodepth2 interleaved in one process, so each ratio is measured under one
machine state; alternating before/after runs spreads slow phases of a shared machine over both. Writes
benchmarks/results/train_before_after.json: every run's ratio to monodepth2, its spread over the interleaved
pairs, GFLOP/s and fraction of the matmul peak, and the medians over the runs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import write_results

HERE = Path(__file__).parent


def run_summary(res: dict) -> dict:
    "The numbers of one bench_train run that the comparison keeps."
    per = res['step_time_ratio_per_repeat']
    return dict(ratio=res['step_time_ratio_vs_monodepth2'], ratio_of_minima=res['step_time_ratio_of_minima'],
                ratio_per_pair_range=[min(per), max(per)], depthnb_step_s=res['step_seconds']['depthnb'],
                monodepth2_step_s=res['step_seconds']['monodepth2'],
                gflops_per_s=res['achieved_gflops_per_s']['depthnb'],
                fraction_of_matmul_peak=res['fraction_of_matmul_peak']['depthnb'],
                matmul_peak_gflops_per_s=res['matmul_peak_gflops_per_s'], load_average_1min=res['load_average_1min'],
                threads=res['threads'], repeats=res['repeats'])


def summarize(before: list[dict], after: list[dict], note: str = '') -> dict:
    "Per-run numbers and medians over the runs, from bench_train results (dicts) of both libraries."
    out = {'note': note}
    for name, runs in (('before', before), ('after', after)):
        rows = [run_summary(r) for r in runs]
        keys = ('ratio', 'ratio_of_minima', 'gflops_per_s', 'fraction_of_matmul_peak', 'depthnb_step_s')
        out[name] = dict(runs=rows, median={k: statistics.median(r[k] for r in rows) for k in keys})
    out['after_over_before_depthnb_step'] = (out['after']['median']['depthnb_step_s']
                                             / out['before']['median']['depthnb_step_s'])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--before', required=True, help='folder holding the older depthnb package')
    ap.add_argument('--pairs', type=int, default=2)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--repeats', type=int, default=7)
    ap.add_argument('--out', default=str(HERE / 'results' / 'train_before_after.json'))
    args = ap.parse_args(argv)
    runs = {'before': [], 'after': []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            for name in ('before', 'after'):
                env = dict(os.environ)
                if name == 'before':
                    env['PYTHONPATH'] = os.pathsep.join(filter(None, [args.before, env.get('PYTHONPATH')]))
                out = Path(tmp) / f'{name}{i}.json'
                cmd = [sys.executable, str(HERE / 'bench_train.py'), '--no-inference', '--threads', str(args.threads),
                       '--repeats', str(args.repeats), '--out', str(out)]
                subprocess.run(cmd, env=env, check=True)
                runs[name].append(json.loads(out.read_text()))
    res = summarize(runs['before'], runs['after'], note=f'before: the depthnb in {args.before}')
    for name in ('before', 'after'):
        m = res[name]['median']
        print(f"{name:6s} ratio to monodepth2 {m['ratio']:.2f} (median of {args.pairs} runs), "
              f"{m['gflops_per_s']:.1f} GFLOP/s = {m['fraction_of_matmul_peak']:.0%} of the matmul peak")
    write_results(res, args.out)
    return res


if __name__ == '__main__':
    main()
