"""Exactness of the built-in renderer, checked with the geometry module (an independent implementation of
the same projective geometry): the labels must explain the images."""
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from depthnb.core import DepthnbInputError
from depthnb.data import synthetic
from depthnb.data.synthetic import (SEMANTIC, IGNORE, CachedWorld, FlyingObjects, Street, SyntheticStereo,
                                    SyntheticVideo, make_world, sample_file, write_cache)
from depthnb.geometry import fb_occlusion, lr_occlusion, rigid_flow, warp_by_disparity, warp_by_flow, warp_by_pose

CLEAN = dict(noise=False, exposure=False, vignetting=False, specular=False)
SIZE = (64, 192)


def batch(s, k): return s[k][None]


@pytest.fixture(scope='module')
def street_video():
    return [Street(seed=7, size=SIZE, video=True, **CLEAN)[i] for i in range(2)]


@pytest.fixture(scope='module')
def flying_video():
    return [FlyingObjects(seed=7, size=SIZE, video=True, **CLEAN)[i] for i in range(2)]


@pytest.fixture(params=['street', 'flying'])
def samples(request, street_video, flying_video):
    return street_video if request.param == 'street' else flying_video


def test_stereo_warp_reproduces_left(samples):
    for s in samples:
        warped, valid = warp_by_disparity(batch(s, 'right'), batch(s, 'disp_l'))
        noc = valid & (batch(s, 'occ_l') < 0.5)
        err = (warped - batch(s, 'left')).abs().mean(1, keepdim=True)[noc].mean().item()
        assert err < 0.01, f'{s["name"]}: mean error {err:.4f} on non-occluded pixels (1 % = 0.01)'
        # and the other way round: left warped into the right view
        warped, valid = warp_by_disparity(batch(s, 'left'), batch(s, 'disp_r'), reference='right')
        noc = valid & (batch(s, 'occ_r') < 0.5)
        assert (warped - batch(s, 'right')).abs().mean(1, keepdim=True)[noc].mean().item() < 0.01


def test_occlusion_agrees_with_lr_check(samples):
    for s in samples:
        agree = (lr_occlusion(batch(s, 'disp_l'), batch(s, 'disp_r')) == batch(s, 'occ_l')).float().mean().item()
        assert agree > 0.95, f'{s["name"]}: occ_l and lr_occlusion agree on {agree:.1%}'
        assert 0 < batch(s, 'occ_l').mean() < 0.5


def test_disparity_depth_consistent(samples):
    for s in samples:
        f, b = s['K'][0, 0], s['baseline']
        finite = torch.isfinite(s['depth_l'])
        torch.testing.assert_close(s['disp_l'][finite], f * b / s['depth_l'][finite])
        assert (s['disp_l'][~finite] == 0).all()


def test_temporal_warp_reproduces_frame(samples):
    """Warping frame t+1 by depth and pose reproduces frame t on static, non-occluded pixels. The median error
    shows the geometry is exact; the mean also holds texture filtering that differs with distance (the camera
    is ~1 m closer in frame t+1, so textures are filtered at another mip level, as a real lens would)."""
    for s in samples:
        depth = batch(s, 'depth_l')
        sky = ~torch.isfinite(depth)
        depth = torch.where(sky, torch.full_like(depth, 1e5), depth)
        warped, valid, _ = warp_by_pose(batch(s, 'left_next'), depth, batch(s, 'T_next'), batch(s, 'K'))
        noc = fb_occlusion(batch(s, 'flow_next'), batch(s, 'flow_next_inv')) < 0.5
        static = ~batch(s, 'moving')
        m = valid & noc & static
        assert m.sum() > 500, f"{s['name']}: only {int(m.sum())} static non-occluded pixels"
        e = (warped - batch(s, 'left')).abs().mean(1, keepdim=True)[m]
        assert e.median().item() < 0.005, f'{s["name"]}: median temporal warp error {e.median().item():.4f}'
        assert e.mean().item() < 0.025, f'{s["name"]}: mean temporal warp error {e.mean().item():.4f}'


def test_flow_is_projected_3d_motion(samples):
    for s in samples:
        depth, K = batch(s, 'depth_l'), batch(s, 'K')
        finite = torch.isfinite(depth)
        rf = rigid_flow(torch.where(finite, depth, torch.ones_like(depth)), batch(s, 'T_next'), K)
        torch.testing.assert_close(rf.expand(1, 2, *SIZE)[finite.expand(1, 2, *SIZE)],
                                   batch(s, 'rigid_flow_next')[finite.expand(1, 2, *SIZE)], atol=2e-3, rtol=1e-4)
        # moving objects: the flow warp reproduces frame t on non-occluded moving pixels
        moving = batch(s, 'moving')
        warped, valid = warp_by_flow(batch(s, 'left_next'), batch(s, 'flow_next'))
        noc = fb_occlusion(batch(s, 'flow_next'), batch(s, 'flow_next_inv')) < 0.5
        m = valid & noc & moving
        if m.sum() > 50:
            err = (warped - batch(s, 'left')).abs().mean(1, keepdim=True)[m].mean().item()
            assert err < 0.02, f'{s["name"]}: flow warp error on moving pixels {err:.4f}'


def test_moving_objects_have_object_flow(samples):
    for s in samples:
        diff = (s['flow_next'] - s['rigid_flow_next']).norm(dim=0, keepdim=True)
        assert (diff[~s['moving']] < 1e-4).all(), 'static pixels must have flow = rigid flow'
        if s['moving'].any():
            assert diff[s['moving']].mean() > 0.01


def test_street_labels():
    s = Street(seed=0, size=SIZE)[0]
    present = set(s['semantic'].unique().tolist())
    assert {SEMANTIC['road'], SEMANTIC['sidewalk'], SEMANTIC['building'], SEMANTIC['sky']} <= present
    assert present <= set(SEMANTIC.values())
    sky = s['semantic'] == SEMANTIC['sky']
    assert torch.isinf(s['depth_l'][sky]).all() and (s['disp_l'][sky] == 0).all()
    assert s['K'][0, 0] == pytest.approx(0.58 * SIZE[1]) and s['baseline'] == pytest.approx(0.54)
    f = FlyingObjects(seed=0, size=SIZE)[0]
    assert set(f['semantic'].unique().tolist()) == {IGNORE}
    assert len(f['instance'].unique()) > 5


def test_resolution_scales_intrinsics_and_disparity():
    a, b = Street(seed=2, size=(32, 96), **CLEAN)[0], Street(seed=2, size=(64, 192), **CLEAN)[0]
    torch.testing.assert_close(b['K'][0, 0], 2 * a['K'][0, 0])
    # the same scene: disparity maps agree after downscaling (values halve)
    da = a['disp_l'].max(); db = b['disp_l'].max()
    assert abs(db / da - 2) < 0.15


def test_deterministic_across_processes_and_workers():
    ds = SyntheticStereo('street', seed=5, size=(24, 72), n=4)
    here = ds[3]
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    there = list(loader)[3]
    for k, v in here.items():
        if isinstance(v, torch.Tensor): assert torch.equal(v, there[k]), k
    code = ('import torch; from depthnb.data.synthetic import SyntheticStereo; '
            'torch.save(SyntheticStereo("street", seed=5, size=(24, 72), n=4)[3]["left"], "/dev/stdout")')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, check=True).stdout
    import io
    assert torch.equal(torch.load(io.BytesIO(out), weights_only=True), here['left'])


def test_cache_round_trip_and_errors(tmp_path):
    w = make_world('flying', seed=1, size=(24, 72), n=2, video=True)
    write_cache(w, tmp_path / 'c', progress=False)
    c = CachedWorld(tmp_path / 'c')
    for k, v in w[0].items():
        if isinstance(v, torch.Tensor): assert torch.equal(c[0][k], v), k
    v = SyntheticVideo(cache=tmp_path / 'c')[1]
    assert 'flow_next' in v
    with pytest.raises(DepthnbInputError, match='another world'):
        write_cache(make_world('street', seed=1, size=(24, 72), n=2), tmp_path / 'c', progress=False)
    (tmp_path / 'c' / '000001.pt').unlink()
    with pytest.raises(DepthnbInputError, match='000001.pt'):
        c[1]
    with pytest.raises(DepthnbInputError, match='meta.json'):
        CachedWorld(tmp_path / 'nothing')


def test_bad_arguments():
    with pytest.raises(DepthnbInputError, match='size'): Street(size=(4, 10))
    with pytest.raises(DepthnbInputError, match='style'): Street(style='mars')
    with pytest.raises(DepthnbInputError, match='world'): make_world('moon')
    with pytest.raises(IndexError): Street(n=2)[2]


# --- the cache under the ways people run it: concurrently, interrupted, copied short, with dying workers ---

WRITER = """
import sys
from depthnb.data.synthetic import make_world, write_cache
n, workers = int(sys.argv[2]), int(sys.argv[3])
write_cache(make_world('flying', seed=4, size=(24, 72), n=n), sys.argv[1], workers=workers, progress=True)
print('finished', flush=True)
"""


def start_writer(folder, n, workers=0):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.Popen([sys.executable, '-c', WRITER, str(folder), str(n), str(workers)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_exact_cache(folder, world):
    "Every sample of the cache equals the world's own rendering (images to 8 bits), and no temporary file is left."
    cache = CachedWorld(folder)
    assert len(cache) == world.n
    for i in range(world.n):
        direct = world[i]
        cached = cache[i]
        for key in ('disp_l', 'occ_l', 'depth_l'):
            assert torch.equal(cached[key], direct[key]), (i, key)
        assert (cached['left'] - direct['left']).abs().max() <= 0.5 / 255 + 1e-6
    assert not list(Path(folder).glob('.*.tmp')), 'a temporary file was left behind'
    assert not (Path(folder) / synthetic.RENDERING_FILE).exists()


def test_concurrent_writers_produce_one_valid_cache(tmp_path):
    """Three processes render the same cache at once (two experiments that need the same data): every one
    finishes without error and the cache is whole (before the lock and per-process temporary names, writers
    collided on `NNNNNN.pt.tmp` and one died with FileNotFoundError)."""
    folder = tmp_path / 'shared'
    writers = [start_writer(folder, 12) for _ in range(3)]
    results = [w.communicate(timeout=300) for w in writers]
    for w, (out, err) in zip(writers, results):
        assert w.returncode == 0 and 'finished' in out, err[-2000:]
    assert_exact_cache(folder, make_world('flying', seed=4, size=(24, 72), n=12))


def test_a_second_writer_waits_for_the_lock(tmp_path):
    folder = tmp_path / 'locked'
    folder.mkdir()
    with synthetic._cache_lock(folder, progress=False):
        writer = start_writer(folder, 2)
        time.sleep(8)                      # long enough to import depthnb and reach the lock
        assert writer.poll() is None, 'the writer did not wait for the lock'
        assert not sample_file(folder, 0).exists()
    out, err = writer.communicate(timeout=300)
    assert writer.returncode == 0 and 'finished' in out, err[-2000:]
    assert 'waiting for another process' in err
    assert_exact_cache(folder, make_world('flying', seed=4, size=(24, 72), n=2))


def test_killed_render_is_reported_then_resumed(tmp_path):
    folder = tmp_path / 'interrupted'
    writer = start_writer(folder, 40)
    deadline = time.time() + 240
    while time.time() < deadline and len(list(folder.glob('0*.pt'))) < 3:
        time.sleep(0.2)
    writer.send_signal(signal.SIGKILL)
    writer.communicate()
    n_there = len(list(folder.glob('0*.pt')))
    assert 3 <= n_there < 40, n_there
    with pytest.raises(DepthnbInputError, match='did not finish'):
        CachedWorld(folder)
    write_cache(make_world('flying', seed=4, size=(24, 72), n=40), folder, progress=False)
    assert_exact_cache(folder, make_world('flying', seed=4, size=(24, 72), n=40))


def test_truncated_sample_is_reported_and_rendered_again(tmp_path):
    world = make_world('flying', seed=2, size=(24, 72), n=3)
    write_cache(world, tmp_path / 'c', progress=False)
    path = sample_file(tmp_path / 'c', 1)
    whole = path.read_bytes()
    path.write_bytes(whole[:len(whole) // 2])                 # as a copy that was cut short
    with pytest.raises(DepthnbInputError, match='000001.pt has .* bytes .* truncated'):
        CachedWorld(tmp_path / 'c')
    with pytest.raises(DepthnbInputError, match='000001.pt'):      # what a training config opens
        SyntheticStereo(cache=tmp_path / 'c')
    write_cache(world, tmp_path / 'c', progress=False)
    assert_exact_cache(tmp_path / 'c', world)
    # a cut-short file found while resuming an interrupted render (no sizes recorded yet) is rendered again too
    (tmp_path / 'c' / synthetic.META_FILE).unlink()
    (tmp_path / 'c' / synthetic.RENDERING_FILE).write_text(json.dumps(synthetic.cache_description(world)))
    path.write_bytes(whole[:100])
    write_cache(world, tmp_path / 'c', progress=False)
    assert_exact_cache(tmp_path / 'c', world)


def test_cache_without_recorded_sizes_still_opens(tmp_path):
    "A cache written before meta.json recorded the file sizes opens (existence checked) and is upgraded."
    world = make_world('flying', seed=2, size=(24, 72), n=2)
    write_cache(world, tmp_path / 'c', progress=False)
    meta_path = tmp_path / 'c' / 'meta.json'
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k != 'files'}))
    assert len(CachedWorld(tmp_path / 'c')) == 2
    write_cache(world, tmp_path / 'c', progress=False)
    assert json.loads(meta_path.read_text()) == meta


class DyingWorkerWorld(FlyingObjects):
    "Sample 3 kills the DataLoader worker that renders it (as the kernel's OOM killer would)."
    def __getitem__(self, i):
        if i == 3 and torch.utils.data.get_worker_info() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__getitem__(i)


def test_render_survives_a_dying_worker(tmp_path):
    world = DyingWorkerWorld(seed=4, size=(24, 72), n=8)
    with pytest.warns(UserWarning, match='in this process'):
        write_cache(world, tmp_path / 'c', workers=2, progress=False)
    assert_exact_cache(tmp_path / 'c', FlyingObjects(seed=4, size=(24, 72), n=8))
