"""Benchmark: the self-supervised loss ops, forward + backward, on CPU.

photometric_error + warp_by_disparity + edge_aware_smoothness at 4×3×192×640 (the issue's setting),
against (a) kornia's equivalents (`ssim_loss` with a 3×3 window, `remap`, `inverse_depth_smoothness_loss`)
and (b) monodepth2's formulation, written out below as the baseline (reflection pad + 3×3 AvgPool2d SSIM,
`grid_sample` warp, `get_smooth_loss`). All variants run interleaved in one process, so the ratios are
measured under the same conditions. Prints a table and writes benchmarks/results/ops.json.

    python benchmarks/bench_ops.py [--repeats 15] [--threads N] [--device cpu]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

from _results import write_results

import torch
import torch.nn as nn
import torch.nn.functional as F

import kornia
from depthnb.geometry import warp_by_disparity
from depthnb.losses import photometric_error, edge_aware_smoothness, ssim


# ---- (b) monodepth2's formulation (layers.py), written out as the baseline -------------------------------
class MD2SSIM(nn.Module):
    "monodepth2's SSIM loss map: reflection padding + five 3×3 AvgPool2d."
    def __init__(self):
        super().__init__()
        self.mu_x_pool, self.mu_y_pool = nn.AvgPool2d(3, 1), nn.AvgPool2d(3, 1)
        self.sig_x_pool, self.sig_y_pool = nn.AvgPool2d(3, 1), nn.AvgPool2d(3, 1)
        self.sig_xy_pool = nn.AvgPool2d(3, 1)
        self.refl = nn.ReflectionPad2d(1)
        self.C1, self.C2 = 0.01 ** 2, 0.03 ** 2

    def forward(self, x, y):
        x, y = self.refl(x), self.refl(y)
        mu_x, mu_y = self.mu_x_pool(x), self.mu_y_pool(y)
        sigma_x = self.sig_x_pool(x ** 2) - mu_x ** 2
        sigma_y = self.sig_y_pool(y ** 2) - mu_y ** 2
        sigma_xy = self.sig_xy_pool(x * y) - mu_x * mu_y
        n = (2 * mu_x * mu_y + self.C1) * (2 * sigma_xy + self.C2)
        d = (mu_x ** 2 + mu_y ** 2 + self.C1) * (sigma_x + sigma_y + self.C2)
        return torch.clamp((1 - n / d) / 2, 0, 1)

_md2_ssim = MD2SSIM()

def md2_reprojection(pred, target):
    "monodepth2's compute_reprojection_loss."
    l1 = (target - pred).abs().mean(1, True)
    return 0.85 * _md2_ssim(pred, target).mean(1, True) + 0.15 * l1

def md2_smooth(disp, img):
    "monodepth2's get_smooth_loss on mean-normalised disparity."
    disp = disp / (disp.mean(2, True).mean(3, True) + 1e-7)
    gdx = (disp[:, :, :, :-1] - disp[:, :, :, 1:]).abs()
    gdy = (disp[:, :, :-1, :] - disp[:, :, 1:, :]).abs()
    gix = (img[:, :, :, :-1] - img[:, :, :, 1:]).abs().mean(1, keepdim=True)
    giy = (img[:, :, :-1, :] - img[:, :, 1:, :]).abs().mean(1, keepdim=True)
    return (gdx * torch.exp(-gix)).mean() + (gdy * torch.exp(-giy)).mean()

def md2_warp(img, disp):
    "Bilinear warp by disparity with a freshly built grid_sample grid (align_corners=True, border padding)."
    b, _, h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=img.dtype), torch.arange(w, dtype=img.dtype), indexing='ij')
    x = xs[None] - disp[:, 0]
    grid = torch.stack((2 * x / (w - 1) - 1, (2 * ys / (h - 1) - 1).expand_as(x)), -1)
    return F.grid_sample(img, grid, padding_mode='border', align_corners=True)


# ---- (a) kornia's equivalents ----------------------------------------------------------------------------
def kornia_warp(img, disp):
    b, _, h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=img.dtype), torch.arange(w, dtype=img.dtype), indexing='ij')
    return kornia.geometry.transform.remap(img, xs[None] - disp[:, 0], ys[None].expand(b, h, w),
                                           padding_mode='border', align_corners=True)

def kornia_reprojection(pred, target):
    s = kornia.losses.ssim_loss(pred, target, 3, reduction='none').mean(1, True)
    return 0.85 * s + 0.15 * (target - pred).abs().mean(1, True)


# ---- the three pipelines ----------------------------------------------------------------------------------
def step_ours(left, right, disp):
    warped, _ = warp_by_disparity(right, disp)
    return photometric_error(left, warped).mean() + 1e-3 * edge_aware_smoothness(disp, left)

def step_md2(left, right, disp):
    return md2_reprojection(md2_warp(right, disp), left).mean() + 1e-3 * md2_smooth(disp, left)

def step_kornia(left, right, disp):
    loss = kornia_reprojection(kornia_warp(right, disp), left).mean()
    return loss + 1e-3 * kornia.losses.inverse_depth_smoothness_loss(disp, left)

PIPELINES = {'depthnb': step_ours, 'monodepth2': step_md2, 'kornia': step_kornia}
SSIM_ONLY = {'depthnb': lambda x, y: ssim(x, y).mean(), 'monodepth2': lambda x, y: _md2_ssim(x, y).mean(),
             'kornia': lambda x, y: kornia.losses.ssim_loss(x, y, 3)}


def time_fwd_bwd(fn, inputs, device) -> float:
    "One forward+backward, in seconds (inputs are leaves re-created so grads do not accumulate)."
    leaves = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
    if device.type == 'cuda':
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn(*leaves).backward()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def bench(fns: dict, inputs, repeats: int, device) -> dict:
    for fn in fns.values():
        time_fwd_bwd(fn, inputs, device)  # warm-up
    times = {k: [] for k in fns}
    for _ in range(repeats):                                   # interleaved: same conditions for all
        for k, fn in fns.items():
            times[k].append(time_fwd_bwd(fn, inputs, device))
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--repeats', type=int, default=15)
    ap.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--shape', type=int, nargs=4, default=[4, 3, 192, 640], metavar=('B', 'C', 'H', 'W'))
    ap.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'ops.json'))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    b, c, h, w = args.shape
    left = torch.rand(b, c, h, w, device=device)
    right = torch.roll(left, -8, dims=-1) * 0.9 + 0.05 * torch.rand(b, c, h, w, device=device)
    disp = (torch.rand(b, 1, h, w, device=device) * 16 + 1)

    # the three pipelines compute the same loss (kornia's smoothness differs: it is not mean-normalised)
    ours, md2 = step_ours(left, right, disp).item(), step_md2(left, right, disp).item()
    ssim_diff = (1 - 2 * _md2_ssim(left, right) - ssim(left, right)).abs().max().item()

    full = bench(PIPELINES, (left, right, disp), args.repeats, device)
    ssim_t = bench(SSIM_ONLY, (left, right), args.repeats, device)
    warp_t = bench({'depthnb': lambda i, d: warp_by_disparity(i, d)[0].mean(),
                    'monodepth2': lambda i, d: md2_warp(i, d).mean()}, (right, disp), args.repeats, device)

    res = dict(
        shape=[b, c, h, w], device=str(device), threads=torch.get_num_threads(), repeats=args.repeats,
        torch=torch.__version__, kornia=kornia.__version__, machine=platform.machine(),
        cpu_count=os.cpu_count(), load_average_1min=round(os.getloadavg()[0], 2),
        seconds={'pipeline': full, 'ssim': ssim_t, 'warp': warp_t},
        speedup_vs_monodepth2=full['monodepth2'] / full['depthnb'],
        speedup_vs_kornia=full['kornia'] / full['depthnb'],
        ssim_speedup_vs_monodepth2=ssim_t['monodepth2'] / ssim_t['depthnb'],
        ssim_speedup_vs_kornia=ssim_t['kornia'] / ssim_t['depthnb'],
        ssim_to_warp_ratio_monodepth2=ssim_t['monodepth2'] / warp_t['monodepth2'],
        loss_depthnb=ours, loss_monodepth2=md2, loss_abs_diff=abs(ours - md2),
        ssim_max_abs_diff_vs_monodepth2=ssim_diff,
        targets={'speedup_vs_monodepth2': '>= 1.5', 'speedup_vs_kornia': '>= 1.0'},
    )
    print(f"forward+backward at {b}×{c}×{h}×{w} on {device} ({res['threads']} threads), "
          f"median of {args.repeats}")
    print(f"{'':12s} {'pipeline ms':>12s} {'ssim ms':>9s} {'warp ms':>9s}")
    for k in PIPELINES:
        wt = f"{warp_t[k] * 1e3:9.1f}" if k in warp_t else f"{'-':>9s}"
        print(f"{k:12s} {full[k] * 1e3:12.1f} {ssim_t[k] * 1e3:9.1f} {wt}")
    print(f"speedup vs monodepth2: {res['speedup_vs_monodepth2']:.2f}× (target ≥ 1.5), vs kornia: "
          f"{res['speedup_vs_kornia']:.2f}× (target ≥ 1.0); "
          f"SSIM alone {res['ssim_speedup_vs_monodepth2']:.2f}× / {res['ssim_speedup_vs_kornia']:.2f}×")
    print(f"monodepth2 SSIM / warp cost: {res['ssim_to_warp_ratio_monodepth2']:.1f}×; "
          f"loss |depthnb − monodepth2| = {res['loss_abs_diff']:.2e}, SSIM max diff {ssim_diff:.2e}")
    write_results(res, args.out)
    return res


if __name__ == '__main__':
    main()
