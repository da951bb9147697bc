"""Benchmark: a training step of DepthNet (ResNet-18) with a stereo photometric + smoothness loss, against the
reference monodepth2 implementation, and inference latency / parameter counts of the networks.

(1) One Adam step at 192×640 (batch 4) of monodepth2's stereo training (their `networks.ResnetEncoder`,
    `networks.DepthDecoder`, `layers.BackprojectDepth`/`Project3D`/`SSIM`/`get_smooth_loss`, the loss of their
    `trainer.py`: 4 scales upsampled to full resolution, min reprojection with identity auto-masking,
    smoothness 1e-3/2^s) and the same step in depthnb (`DepthNet`, `warp_by_disparity`, `photometric_error`,
    `min_reprojection`, `edge_aware_smoothness`), interleaved in one process. monodepth2 is taken from its
    PyPI wheel, unpacked into a temporary folder (`pip download --no-deps monodepth2`): its top-level `layers`,
    `networks`, … modules are not installed into the environment.
(2) How much of the machine a step uses: the FLOPs of one step (matrix products and convolutions,
    forward + backward, counted by `torch.utils.flop_counter.FlopCounterMode`; elementwise work is not
    counted) divided by the median step time, as a fraction of the machine's fp32 matmul peak measured in the
    same run (the best of several large `torch.mm` at the same thread count).
(3) Inference latency (batch 1, no grad) and parameter counts of DispNet, StereoNet and DepthNet at 384×1248
    and 192×640, at each of `--inference-threads` (default: the run's thread count): the networks run in turn,
    `--inference-repeats` rounds after a warm-up, and each latency is the median of its rounds.
    `inference.stereonet_to_dispnet_ratio` = StereoNet's median / DispNet's at 384×1248 (target ≤ 1.5; with
    several thread counts the largest; `..._by_threads` each). `inference.by_threads` holds every latency and
    the ratio in each round, whose spread says how noisy the machine was; the top-level rows are those of the
    first thread count.
Prints a table and writes benchmarks/results/train.json (`step_time_ratio_vs_monodepth2` = ours / reference,
from the medians; `step_time_ratio_of_minima` from the fastest step of each, which load on a shared machine
can only slow down; `step_time_ratio_per_repeat` = the ratio of each interleaved pair, whose spread says how
noisy the machine was). The matmul peak is measured between the repeats and the best rate kept.
`--inference-only` measures (3) alone and replaces the `inference` part of an existing results file.

    python benchmarks/bench_train.py [--repeats 7] [--batch 4] [--threads N]
    python benchmarks/bench_train.py --inference-only --inference-threads 1 2 [--inference-repeats 7]
"""
from __future__ import annotations

import argparse
import json
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
from torch.utils.flop_counter import FlopCounterMode

from depthnb.geometry import warp_by_disparity
from depthnb.losses import edge_aware_smoothness, masked_mean, min_reprojection, photometric_error
from depthnb.models import DepthNet, DispNet, StereoNet
from depthnb.models.mono import sigmoid_to_depth


def monodepth2_modules(tmp: Path):
    "Download and unpack the monodepth2 wheel into `tmp`; import its `networks` and `layers`."
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '-q', '-d', str(tmp), 'monodepth2']
    r = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(tmp.glob('monodepth2-*.whl'))
    if not wheels:
        raise SystemExit(f'could not download the monodepth2 wheel: {r.stderr[-500:]}')
    with zipfile.ZipFile(wheels[0]) as z:
        z.extractall(tmp / 'md2')
    sys.path.insert(0, str(tmp / 'md2'))
    import layers
    import networks
    return networks, layers


def make_md2_step(networks, layers, left, right, K, T, lr=1e-4):
    b, _, h, w = left.shape
    enc = networks.ResnetEncoder(18, False)
    dec = networks.DepthDecoder(enc.num_ch_enc, range(4))
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr)
    backproject, project, ssim = layers.BackprojectDepth(b, h, w), layers.Project3D(b, h, w), layers.SSIM()
    K4 = torch.eye(4).expand(b, 4, 4).clone()
    K4[:, :3, :3] = K
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
        opt.zero_grad()
        total.backward()
        opt.step()
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
        opt.zero_grad()
        total.backward()
        opt.step()
    return step, sum(p.numel() for p in net.parameters())


def matmul_peak_gflops(sizes=(1024, 2048), repeats=3) -> float:
    "The machine's fp32 matmul rate (GFLOP/s) at the current thread count: the best n×n `torch.mm`."
    best = 0.
    for n in sizes:
        a, b = torch.rand(n, n), torch.rand(n, n)
        torch.mm(a, b)                                                    # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def step_flops(step) -> int:
    "FLOPs of one call of `step` (matrix products and convolutions, forward + backward), by FlopCounterMode."
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


INFERENCE_SIZES = ((192, 640), (384, 1248))


def inference_nets() -> dict:
    "The networks of (3): name → (network in eval mode, whether it takes a stereo pair)."
    nets = {'DispNet': (DispNet(), True), 'StereoNet': (StereoNet(), True), 'DepthNet': (DepthNet(18), False)}
    return {name: (net.eval(), stereo) for name, (net, stereo) in nets.items()}


def latencies(nets: dict, size, repeats: int) -> dict[str, list[float]]:
    """Seconds of a forward pass (batch 1, no grad) of each network at `size`, `repeats` rounds in which the
    networks run in turn (after one warm-up pass each), so that a change of the machine's load hits all."""
    x = torch.rand(1, 3, *size)
    inputs = {name: (x, x) if stereo else (x,) for name, (_, stereo) in nets.items()}
    times = {name: [] for name in nets}
    with torch.no_grad():
        for name, (net, _) in nets.items():
            net(*inputs[name])
        for _ in range(repeats):
            for name, (net, _) in nets.items():
                t = time.perf_counter()
                net(*inputs[name])
                times[name].append(time.perf_counter() - t)
    return times


def inference_results(thread_counts, repeats: int) -> dict:
    "(3) at each of `thread_counts`: latencies, parameter counts and StereoNet's time ratio to DispNet."
    torch.manual_seed(0)
    nets = inference_nets()
    before = torch.get_num_threads()
    by_threads = {}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        rows = {name: dict(params=sum(p.numel() for p in net.parameters()))
                for name, (net, _) in nets.items()}
        for size in INFERENCE_SIZES:
            times = latencies(nets, size, repeats)
            key = f'{size[0]}x{size[1]}'
            for name in nets:
                rows[name][f'{key}_ms'] = 1e3 * statistics.median(times[name])
                rows[name][f'{key}_ms_all'] = [1e3 * t for t in times[name]]
        stereo, disp = rows['StereoNet'], rows['DispNet']
        per_repeat = [a / b for a, b in zip(stereo['384x1248_ms_all'], disp['384x1248_ms_all'])]
        ratio = stereo['384x1248_ms'] / disp['384x1248_ms']
        by_threads[str(threads)] = dict(rows, stereonet_to_dispnet_ratio=ratio,
                                        stereonet_to_dispnet_ratio_per_repeat=per_repeat)
    torch.set_num_threads(before)
    first = by_threads[str(thread_counts[0])]
    ratios = {t: r['stereonet_to_dispnet_ratio'] for t, r in by_threads.items()}
    return dict({name: first[name] for name in nets}, threads=list(thread_counts), repeats=repeats,
                stereonet_to_dispnet_ratio=max(ratios.values()), stereonet_to_dispnet_ratio_by_threads=ratios,
                target='stereonet_to_dispnet_ratio <= 1.5', by_threads=by_threads)


def print_inference(inference: dict) -> None:
    for threads, rows in inference['by_threads'].items():
        print(f"inference, batch 1, {threads} thread(s), median of {inference['repeats']} rounds:")
        print(f"  {'network':10s} {'params (M)':>10s} {'192×640 ms':>11s} {'384×1248 ms':>12s}")
        for name in ('DispNet', 'StereoNet', 'DepthNet'):
            row = rows[name]
            print(f"  {name:10s} {row['params'] / 1e6:10.2f} {row['192x640_ms']:11.1f} "
                  f"{row['384x1248_ms']:12.1f}")
        spread = rows['stereonet_to_dispnet_ratio_per_repeat']
        print(f"  StereoNet / DispNet at 384×1248: {rows['stereonet_to_dispnet_ratio']:.2f} (target ≤ 1.5; "
              f"per round {min(spread):.2f} … {max(spread):.2f})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--repeats', type=int, default=7)
    ap.add_argument('--batch', type=int, default=4)
    ap.add_argument('--size', type=int, nargs=2, default=[192, 640])
    ap.add_argument('--threads', type=int, default=None, help="torch's intra-op threads (default: torch's)")
    ap.add_argument('--no-inference', action='store_true', help='skip (3), the inference latencies')
    ap.add_argument('--inference-only', action='store_true',
                    help="only (3): replace the 'inference' part of the results file --out")
    ap.add_argument('--inference-threads', type=int, nargs='+', default=None,
                    help='thread counts of (3) (default: the run\'s)')
    ap.add_argument('--inference-repeats', type=int, default=7)
    ap.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'train.json'))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    thread_counts = args.inference_threads or [torch.get_num_threads()]
    if args.inference_only:
        res = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
        res['inference'] = inference_results(thread_counts, args.inference_repeats)
        res['inference']['load_average_1min'] = round(os.getloadavg()[0], 2)
        print_inference(res['inference'])
        write_results(res, args.out)
        return res
    torch.manual_seed(0)
    b, (h, w) = args.batch, args.size
    load_before = os.getloadavg()
    left = torch.rand(b, 3, h, w)
    right = torch.roll(left, -6, dims=-1)
    focal, baseline = 0.58 * w, 0.1                  # monodepth2's stereo T uses a 0.1 baseline
    K = torch.tensor([[focal, 0, (w - 1) / 2], [0, focal, (h - 1) / 2], [0, 0, 1.]]).expand(b, 3, 3).clone()
    T = torch.eye(4).expand(b, 4, 4).clone()
    T[:, 0, 3] = -baseline
    names = ('monodepth2', 'depthnb')
    with tempfile.TemporaryDirectory() as tmp:
        networks, layers = monodepth2_modules(Path(tmp))
        md2_step, md2_params = make_md2_step(networks, layers, left, right, K, T)
        our_step, our_params = make_our_step(left, right, focal, baseline)
        steps = dict(zip(names, (md2_step, our_step)))
        for f in steps.values():
            f()                                                           # warm-up
        peak = []
        times = {k: [] for k in names}
        for _ in range(args.repeats):
            for k, f in steps.items():
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
            peak.append(matmul_peak_gflops())             # between the repeats: the best rate of the run
        flops = {k: step_flops(f) for k, f in steps.items()}
    step = {k: statistics.median(v) for k, v in times.items()}
    per_repeat = [ours / ref for ref, ours in zip(times['monodepth2'], times['depthnb'])]
    peak_gflops = max(peak)
    achieved = {k: flops[k] / step[k] / 1e9 for k in names}
    res = dict(size=[h, w], batch=b, repeats=args.repeats, threads=torch.get_num_threads(),
               torch=torch.__version__, machine=platform.machine(), cpu_count=os.cpu_count(),
               load_average_1min=[round(load_before[0], 2), round(os.getloadavg()[0], 2)],
               step_seconds=step, step_seconds_all=times,
               params=dict(depthnet_resnet18=our_params, monodepth2_resnet18=md2_params),
               step_time_ratio_vs_monodepth2=step['depthnb'] / step['monodepth2'],
               step_time_ratio_of_minima=min(times['depthnb']) / min(times['monodepth2']),
               step_time_ratio_per_repeat=per_repeat, target='<= 0.8',
               step_gflop=({k: flops[k] / 1e9 for k in names}),
               achieved_gflops_per_s=achieved, matmul_peak_gflops_per_s=peak_gflops,
               fraction_of_matmul_peak={k: achieved[k] / peak_gflops for k in names}, inference={})
    ratio = res['step_time_ratio_vs_monodepth2']
    spread = (min(per_repeat), max(per_repeat))
    print(f'training step at {b}×3×{h}×{w} on CPU ({res["threads"]} threads), median of {args.repeats} '
          f'(1-min load average {res["load_average_1min"][0]} → {res["load_average_1min"][1]}):')
    print(f"  monodepth2 {step['monodepth2']:.3f} s   depthnb {step['depthnb']:.3f} s   ratio {ratio:.2f} "
          f"(target ≤ 0.8; per interleaved pair {spread[0]:.2f} … {spread[1]:.2f}; "
          f"of the fastest steps {res['step_time_ratio_of_minima']:.2f})")
    print(f'  fp32 matmul peak {peak_gflops:.1f} GFLOP/s (best torch.mm)')
    for k in names:
        print(f"  {k:10s} {res['step_gflop'][k]:.1f} GFLOP/step (mm + conv) → {achieved[k]:.1f} GFLOP/s = "
              f"{res['fraction_of_matmul_peak'][k]:.0%} of the matmul peak")
    if not args.no_inference:
        res['inference'] = inference_results(thread_counts, args.inference_repeats)
        print_inference(res['inference'])
    write_results(res, args.out)
    return res


if __name__ == '__main__':
    main()
