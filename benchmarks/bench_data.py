"""Benchmark: the built-in renderer and its cache against a training step.

Reports, at 128×384 on this machine (all in one run, so the ratios compare like with like):
- samples/s of each world rendered on the fly (stereo and video), in one process;
- samples/s when reading the cached copy written by `write_cache` (and the cache/render speed-up, target ≥ 5×);
- `render_to_step_ratio`: the time the DataLoader (cache + workers) needs to deliver one training batch divided
  by one training step of a DispNet-sized network (forward + backward + Adam) on the same batch; target < 0.25,
  i.e. data is never the bottleneck. The on-the-fly ratio (no cache) is reported too.

The DispNet-sized network below follows DispNetS (Mayer et al. 2016: a 6-level 7×7…3×3 encoder with 64…1024
channels and an up-convolution decoder); it stands in for `depthnb.models.DispNet` until the models land.
Writes benchmarks/results/data.json.

    python benchmarks/bench_data.py [--n 16] [--batch 4] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from _results import write_results

import torch
import torch.nn as nn
import torch.nn.functional as F

from depthnb.data.synthetic import CachedWorld, SyntheticStereo, make_world, write_cache


def conv(i, o, k, s=1):
    return nn.Sequential(nn.Conv2d(i, o, k, s, k // 2), nn.LeakyReLU(0.1, inplace=True))


class DispNetSized(nn.Module):
    "A DispNetS-sized encoder–decoder (≈38 M parameters) predicting one disparity map from a stereo pair."
    def __init__(self):
        super().__init__()
        self.enc = nn.ModuleList([conv(6, 64, 7, 2), conv(64, 128, 5, 2), nn.Sequential(conv(128, 256, 5, 2), conv(256, 256, 3)),
                                  nn.Sequential(conv(256, 512, 3, 2), conv(512, 512, 3)),
                                  nn.Sequential(conv(512, 512, 3, 2), conv(512, 512, 3)),
                                  nn.Sequential(conv(512, 1024, 3, 2), conv(1024, 1024, 3))])
        chans = [1024, 512, 256, 128, 64, 32]
        skips = [512, 512, 256, 128, 64]
        self.up = nn.ModuleList([nn.Sequential(nn.ConvTranspose2d(chans[i], chans[i + 1], 4, 2, 1), nn.LeakyReLU(0.1, inplace=True))
                                 for i in range(5)])
        self.iconv = nn.ModuleList([conv(chans[i + 1] + skips[i], chans[i + 1], 3) for i in range(5)])
        self.pred = nn.Conv2d(32, 1, 3, 1, 1)

    def forward(self, left, right):
        x, feats = torch.cat((left, right), 1), []
        for e in self.enc:
            x = e(x); feats.append(x)
        for i in range(5):
            x = self.up[i](x)
            skip = feats[4 - i]
            x = self.iconv[i](torch.cat((x[..., :skip.shape[-2], :skip.shape[-1]], skip), 1))
        return F.interpolate(self.pred(x), size=left.shape[-2:], mode='bilinear', align_corners=False)


def time_train_steps(batch, steps=3):
    net = DispNetSized()
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    left, right, disp = batch['left'], batch['right'], batch['disp_l']
    ts = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        loss = (net(left, right) - disp).abs().mean()
        opt.zero_grad(); loss.backward(); opt.step()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts[1:]), sum(p.numel() for p in net.parameters())


def time_loader(ds, batch, workers, batches):
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, shuffle=False,
                                         persistent_workers=False, prefetch_factor=2 if workers else None)
    it = iter(loader)
    next(it)                                            # workers started, first batch (warm-up)
    t = time.perf_counter()
    for _ in range(batches): next(it)
    return (time.perf_counter() - t) / batches


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--size', type=int, nargs=2, default=[128, 384])
    ap.add_argument('--n', type=int, default=16, help='samples rendered per world for the samples/s figures')
    ap.add_argument('--batch', type=int, default=4)
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'data.json'))
    args = ap.parse_args(argv)
    size = tuple(args.size)
    res = dict(size=list(size), batch=args.batch, workers=args.workers, torch=torch.__version__, threads=torch.get_num_threads(),
               cpu_count=os.cpu_count(), machine=platform.machine(), worlds={})
    with tempfile.TemporaryDirectory() as tmp:
        for name in ('street', 'city', 'flying'):
            for video in (False, True):
                key = f'{name}{"-video" if video else ""}'
                n = args.n if not video else max(4, args.n // 2)
                world = make_world(name, seed=0, size=size, n=n, video=video)
                t = time.perf_counter()
                for i in range(n): world[i]
                render_s = (time.perf_counter() - t) / n
                cache = write_cache(world, Path(tmp) / key, workers=0, progress=False)
                cw = CachedWorld(cache)
                t = time.perf_counter()
                for i in range(n): cw[i]
                load_s = (time.perf_counter() - t) / n
                res['worlds'][key] = dict(render_samples_per_s=1 / render_s, cache_samples_per_s=1 / load_s,
                                          cache_speedup=render_s / load_s)
                print(f'{key:14s} render {1 / render_s:7.2f} samples/s   cache {1 / load_s:8.1f} samples/s   '
                      f'cache speed-up {render_s / load_s:6.1f}×')
        # one training batch from the cache (with workers) vs a DispNet-sized training step
        nb = 6
        cache = write_cache(make_world('street', seed=1, size=size, n=args.batch * (nb + 1)), Path(tmp) / 'train',
                            workers=args.workers, progress=False)
        cached_batch_s = time_loader(SyntheticStereo(cache=cache), args.batch, args.workers, nb)
        fly_batch_s = time_loader(SyntheticStereo('street', seed=2, size=size, n=args.batch * 3), args.batch, args.workers, 2)
        batch = next(iter(torch.utils.data.DataLoader(SyntheticStereo(cache=cache), batch_size=args.batch)))
        step_s, params = time_train_steps(batch)
    res.update(dispnet_sized_params=params, train_step_s=step_s, cached_batch_s=cached_batch_s, on_the_fly_batch_s=fly_batch_s,
               render_to_step_ratio=cached_batch_s / step_s, on_the_fly_render_to_step_ratio=fly_batch_s / step_s,
               targets=dict(render_to_step_ratio='< 0.25', cache_speedup='>= 5'))
    print(f'DispNet-sized training step ({params / 1e6:.1f} M parameters, batch {args.batch}): {step_s:.2f} s')
    print(f'one batch from the cache with {args.workers} workers: {cached_batch_s * 1e3:.1f} ms → render_to_step_ratio '
          f'{res["render_to_step_ratio"]:.3f} (target < 0.25)')
    print(f'one batch rendered on the fly with {args.workers} workers: {fly_batch_s:.2f} s → ratio '
          f'{res["on_the_fly_render_to_step_ratio"]:.2f}')
    write_results(res, args.out)
    return res


if __name__ == '__main__':
    main()
