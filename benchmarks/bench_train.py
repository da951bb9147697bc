"""Benchmark: a training step of DepthNet (ResNet-18) with a stereo photometric + smoothness loss, against the
reference monodepth2 implementation, and inference latency / parameter counts of the networks.

(1) One Adam step at 192×640 (batch 4) of monodepth2's stereo training (their `networks.ResnetEncoder`,
    `networks.DepthDecoder`, `layers.BackprojectDepth`/`Project3D`/`SSIM`/`get_smooth_loss`, the loss of their
    `trainer.py`: 4 scales upsampled to full resolution, min reprojection with identity auto-masking, smoothness
    1e-3/2^s) and the same step in depthnb (`DepthNet`, `warp_by_disparity`, `photometric_error`,
    `min_reprojection`, `edge_aware_smoothness`), interleaved in one process. monodepth2 is taken from its PyPI
    wheel, unpacked into a temporary folder (`pip download --no-deps monodepth2`): its top-level `layers`,
    `networks`, … modules are not installed into the environment.
(2) Inference latency (batch 1, no grad) and parameter counts of DispNet, StereoNet and DepthNet at 384×1248
    and 192×640.
Prints a table and writes benchmarks/results/train.json (`step_time_ratio_vs_monodepth2` = ours / reference).

    python benchmarks/bench_train.py [--repeats 5] [--batch 4]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from _results import write_results

import torch
import torch.nn.functional as F

from depthnb.geometry import warp_by_disparity
from depthnb.losses import edge_aware_smoothness, masked_mean, min_reprojection, photometric_error
from depthnb.models import DepthNet, DispNet, StereoNet
from depthnb.models.mono import sigmoid_to_depth


def monodepth2_modules(tmp: Path):
    "Download and unpack the monodepth2 wheel into `tmp`; import its `networks` and `layers`."
    r = subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps', '-q', '-d', str(tmp), 'monodepth2'],
                       capture_output=True, text=True)
    wheels = list(tmp.glob('monodepth2-*.whl'))
    if not wheels: raise SystemExit(f'could not download the monodepth2 wheel: {r.stderr[-500:]}')
    with zipfile.ZipFile(wheels[0]) as z: z.extractall(tmp / 'md2')
    sys.path.insert(0, str(tmp / 'md2'))
    import layers, networks  # noqa: E401
    return networks, layers


def make_md2_step(networks, layers, left, right, K, T, lr=1e-4):
    b, _, h, w = left.shape
    enc = networks.ResnetEncoder(18, False)
    dec = networks.DepthDecoder(enc.num_ch_enc, range(4))
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr)
    backproject, project, ssim = layers.BackprojectDepth(b, h, w), layers.Project3D(b, h, w), layers.SSIM()
    K4 = torch.eye(4).expand(b, 4, 4).clone(); K4[:, :3, :3] = K
    inv_K = torch.linalg.inv(K4)

    def reproj(pred, target):
        return 0.85 * ssim(pred, target).mean(1, True) + 0.15 * (target - pred).abs().mean(1, True)

    def step():
        outputs = dec(enc(left))
        total = 0
        identity = reproj(right, left)
        for s in range(4):
            disp = outputs[('disp', s)]
            up = F.interpolate(disp, [h, w], mode='bilinear', align_corners=False)
            _, depth = layers.disp_to_depth(up, 0.1, 100)
            pix = project(backproject(depth, inv_K), K4, T)
            pred = F.grid_sample(right, pix, padding_mode='border', align_corners=True)
            combined = torch.cat((identity + torch.randn(identity.shape) * 1e-5, reproj(pred, left)), 1)
            loss = combined.min(1)[0].mean()
            color = F.interpolate(left, disp.shape[-2:], mode='bilinear', align_corners=False)
            norm = disp / (disp.mean(2, True).mean(3, True) + 1e-7)
            loss = loss + 1e-3 * layers.get_smooth_loss(norm, color) / (2 ** s)
            total = total + loss
        total = total / 4
        opt.zero_grad(); total.backward(); opt.step()
    return step, sum(p.numel() for p in params)


def make_our_step(left, right, focal, baseline, lr=1e-4):
    h, w = left.shape[-2:]
    net = DepthNet(18)
    opt = torch.optim.Adam(net.parameters(), lr)

    def step():
        disps = net(left)['disp']
        identity = photometric_error(left, right)
        total = 0
        for s, disp in enumerate(disps):
            up = F.interpolate(disp, [h, w], mode='bilinear', align_corners=False)
            _, depth = sigmoid_to_depth(up, 0.1, 100)
            warped, _ = warp_by_disparity(right, focal * baseline / depth)
            best, auto = min_reprojection([photometric_error(left, warped)], [identity])
            color = F.interpolate(left, disp.shape[-2:], mode='bilinear', align_corners=False)
            total = total + masked_mean(best, auto) + 1e-3 * edge_aware_smoothness(disp, color) / (2 ** s)
        total = total / 4
        opt.zero_grad(); total.backward(); opt.step()
    return step, sum(p.numel() for p in net.parameters())


def latency(net, inputs, repeats=3):
    net.eval()
    with torch.no_grad():
        net(*inputs)
        ts = []
        for _ in range(repeats):
            t = time.perf_counter(); net(*inputs); ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--batch', type=int, default=4)
    ap.add_argument('--size', type=int, nargs=2, default=[192, 640])
    ap.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'train.json'))
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    b, (h, w) = args.batch, args.size
    left = torch.rand(b, 3, h, w); right = torch.roll(left, -6, dims=-1)
    focal, baseline = 0.58 * w, 0.1                                       # monodepth2's stereo T uses a 0.1 baseline
    K = torch.tensor([[focal, 0, (w - 1) / 2], [0, focal, (h - 1) / 2], [0, 0, 1.]]).expand(b, 3, 3).clone()
    T = torch.eye(4).expand(b, 4, 4).clone(); T[:, 0, 3] = -baseline
    with tempfile.TemporaryDirectory() as tmp:
        networks, layers = monodepth2_modules(Path(tmp))
        md2_step, md2_params = make_md2_step(networks, layers, left, right, K, T)
        our_step, our_params = make_our_step(left, right, focal, baseline)
        for f in (md2_step, our_step): f()                                # warm-up
        times = {'monodepth2': [], 'depthnb': []}
        for _ in range(args.repeats):
            for k, f in (('monodepth2', md2_step), ('depthnb', our_step)):
                t = time.perf_counter(); f(); times[k].append(time.perf_counter() - t)
    step = {k: statistics.median(v) for k, v in times.items()}
    res = dict(size=[h, w], batch=b, repeats=args.repeats, threads=torch.get_num_threads(), torch=torch.__version__,
               machine=platform.machine(), cpu_count=os.cpu_count(), step_seconds=step,
               params=dict(depthnet_resnet18=our_params, monodepth2_resnet18=md2_params),
               step_time_ratio_vs_monodepth2=step['depthnb'] / step['monodepth2'], target='<= 0.8', inference={})
    print(f'training step at {b}×3×{h}×{w} on CPU ({res["threads"]} threads), median of {args.repeats}:')
    print(f"  monodepth2 {step['monodepth2']:.3f} s   depthnb {step['depthnb']:.3f} s   ratio {res['step_time_ratio_vs_monodepth2']:.2f} (target ≤ 0.8)")
    print(f"{'network':10s} {'params (M)':>10s} {'192×640 ms':>11s} {'384×1248 ms':>12s}")
    for name, net, stereo in (('DispNet', DispNet(), True), ('StereoNet', StereoNet(), True), ('DepthNet', DepthNet(18), False)):
        row = dict(params=sum(p.numel() for p in net.parameters()))
        for (hh, ww) in ((192, 640), (384, 1248)):
            x = torch.rand(1, 3, hh, ww)
            row[f'{hh}x{ww}_ms'] = 1e3 * latency(net, (x, x) if stereo else (x,))
        res['inference'][name] = row
        print(f"{name:10s} {row['params'] / 1e6:10.2f} {row['192x640_ms']:11.1f} {row['384x1248_ms']:12.1f}")
    write_results(res, args.out)
    return res


if __name__ == '__main__':
    main()
