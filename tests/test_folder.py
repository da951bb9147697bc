"""The `Folder` dataset (issue 15): a folder written in its true on-disk format (PNG images, a hand-written
calib.yaml, PFM ground truth from independently built bytes, .npy depth) reads back exactly; `depthnb train
--data folder:PATH` trains on it for 2 steps and `depthnb eval --data folder:PATH` / `depthnb.evaluate`
evaluate it; PFM writing agrees with OpenCV's reader; problems name the file."""
import json
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import depthnb
from depthnb.cli import main
from depthnb.core import DepthnbInputError
from depthnb.data.datasets import Folder, RealPair
from depthnb.data.io import read_pfm, write_pfm
from depthnb.data.synthetic import SyntheticStereo
from depthnb.engine import read_yaml

K = np.array([[124.37, 0., 44.6], [0., 124.37, 30.8], [0., 0., 1.]])
BASELINE = 0.193


def pfm_bytes(a: np.ndarray) -> bytes:
    "A one-channel little-endian PFM built by hand: header, then rows bottom to top."
    h, w = a.shape
    rows = b''.join(struct.pack(f'<{w}f', *row) for row in a[::-1])
    return f'Pf\n{w} {h}\n-1.0\n'.encode() + rows


def png(path: Path, img: np.ndarray) -> None:
    "An H×W×3 uint8 image written by Pillow."
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


@pytest.fixture(scope='module')
def own(tmp_path_factory):
    """Two stereo pairs in the Folder layout: the real Motorcycle pair at 1/8 and its mirror image with the
    roles swapped (a valid stereo pair too), GT disparity as PFM (inf = no GT), GT depth as .npy."""
    root = tmp_path_factory.mktemp('own')
    pair = RealPair(factor=8)[0]
    to8 = lambda t: (t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    disp = np.where(pair['disp_l_valid'][0], pair['disp_l'][0], np.inf).astype(np.float32)
    images = {'0001': (to8(pair['left']), to8(pair['right'])),
              '0002': (to8(pair['right'])[:, ::-1], to8(pair['left'])[:, ::-1])}
    gts = {'0001': disp, '0002': np.full_like(disp, 7.5)}
    for name, (left, right) in images.items():
        png(root / 'left' / f'{name}.png', np.ascontiguousarray(left))
        png(root / 'right' / f'{name}.png', np.ascontiguousarray(right))
        (root / 'disp').mkdir(exist_ok=True)
        (root / 'disp' / f'{name}.pfm').write_bytes(pfm_bytes(gts[name]))
        (root / 'depth').mkdir(exist_ok=True)
        np.save(root / 'depth' / f'{name}.npy', K[0, 0] * BASELINE / gts[name])
    rows = ', '.join('[' + ', '.join(f'{x}' for x in row) + ']' for row in K)
    (root / 'calib.yaml').write_text(f'# my camera\nK: [{rows}]\nbaseline: {BASELINE}   # metres\n')
    return dict(root=root, images=images, gts=gts)


def test_round_trip_values(own):
    ds = Folder(own['root'])
    assert len(ds) == 2
    reference_keys = set(SyntheticStereo('flying', size=(16, 32), n=1)[0]) & set(RealPair(factor=8)[0])
    s = ds[0]
    assert reference_keys <= set(s), reference_keys - set(s)       # the keys the other datasets share
    assert set(s) == {'left', 'right', 'K', 'baseline', 'disp_l', 'disp_l_valid', 'depth_l', 'depth_l_valid',
                      'name'}
    for i, name in enumerate(('0001', '0002')):
        s = ds[i]
        assert s['name'] == name
        for key, img in zip(('left', 'right'), own['images'][name]):
            assert s[key].shape == (3, 62, 92) and s[key].dtype == torch.float32
            np.testing.assert_array_equal((s[key].permute(1, 2, 0).numpy() * 255).round(), img)
        gt = own['gts'][name]
        np.testing.assert_array_equal(s['disp_l_valid'][0].numpy(), np.isfinite(gt))
        np.testing.assert_array_equal(s['disp_l'][0].numpy(), np.where(np.isfinite(gt), gt, 0))
        np.testing.assert_allclose(s['depth_l'][0][s['depth_l_valid'][0]].numpy(),
                                   (K[0, 0] * BASELINE / gt)[np.isfinite(gt)], rtol=1e-6)
        np.testing.assert_allclose(s['K'].numpy(), K, rtol=1e-6)
        assert float(s['baseline']) == pytest.approx(BASELINE)
    resized = Folder(own['root'], size=(31, 46))[0]
    assert resized['left'].shape == (3, 31, 46)
    np.testing.assert_allclose(resized['K'][0, 0], K[0, 0] / 2, rtol=1e-6)   # K and disparity follow the size
    assert float(resized['disp_l'].max()) == pytest.approx(float(ds[0]['disp_l'].max()) / 2, rel=0.02)


def test_write_pfm_round_trip_and_opencv(tmp_path):
    a = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32) * 100
    a[1, 2] = np.inf
    write_pfm(tmp_path / 'a.pfm', a)
    np.testing.assert_array_equal(read_pfm(tmp_path / 'a.pfm'), a)
    by_opencv = cv2.imread(str(tmp_path / 'a.pfm'), cv2.IMREAD_UNCHANGED)      # an independent reader
    np.testing.assert_array_equal(by_opencv, a)
    assert (tmp_path / 'a.pfm').read_bytes() == pfm_bytes(a)


def test_train_and_evaluate_on_the_folder(own, tmp_path):
    root, run = own['root'], tmp_path / 'run'
    argv = ['train', '--method', 'supervised', '--data', f'folder:{root}', '--set', f'out={run}',
            '--set', 'stages.0.steps=2', '--set', 'batch_size=2', '--set', 'progress=false',
            '--set', 'tensorboard=false', '--set', 'method_args.width=8',
            '--set', 'data.train.args.size=[32,48]']
    assert main(argv) == 0
    config = read_yaml(run / 'config.yaml')
    expected = {'type': 'Folder', 'args': {'root': str(root.resolve()), 'size': [32, 48]}}
    assert config['data']['train'] == expected
    assert json.loads((run / 'log.jsonl').read_text().splitlines()[-1])['step'] == 2
    metrics_file = tmp_path / 'metrics.json'
    assert main(['eval', '--checkpoint', str(run), '--data', f'folder:{root}', '--metrics', 'disparity',
                 'depth', '--out', str(metrics_file)]) == 0
    from_cli = json.loads(metrics_file.read_text())
    assert from_cli['samples'] == 2 and from_cli['depth']['images'] == 2
    method = depthnb.load(run)                          # the default device, as the command's
    in_python = depthnb.evaluate(method, Folder(root), ['disparity'], batch_size=1)
    assert in_python['disparity']['pixels'] == int(np.isfinite(own['gts']['0001']).sum()) + 62 * 92
    assert in_python['disparity']['epe'] == pytest.approx(from_cli['disparity']['epe'], rel=1e-5)


def test_data_option_names_the_dataset(own, capsys):
    # DFR has two datasets: --data must say which one the folder replaces
    assert main(['train', '--method', 'dfr', '--data', f'folder:{own["root"]}']) == 2
    assert '--data unlabelled=folder:' in capsys.readouterr().err
    assert main(['eval', '--checkpoint', 'nowhere', '--data', 'kitti']) == 2
    assert 'folder:PATH' in capsys.readouterr().err


def test_problems_name_the_file(own, tmp_path):
    import shutil
    root = tmp_path / 'copy'
    shutil.copytree(own['root'], root)
    (root / 'disp' / '0002.pfm').unlink()
    with pytest.raises(DepthnbInputError, match=f'only in {root / "left"}: 0002'):
        Folder(root)
    (root / 'disp' / '0002.pfm').write_bytes(pfm_bytes(np.ones((5, 5), np.float32)))
    with pytest.raises(DepthnbInputError, match=str(root / 'disp' / '0002.pfm')):
        Folder(root)[1]
    (root / 'disp' / '0002.pfm').write_bytes(b'Pf\n5 5\n-1.0\n')                      # truncated
    with pytest.raises(DepthnbInputError, match=str(root / 'disp' / '0002.pfm')):
        Folder(root)[1]
    (root / 'calib.yaml').write_text('K: [[1, 0, 0], [0, 1, 0]]\n')
    with pytest.raises(DepthnbInputError, match=str(root / 'calib.yaml')):
        Folder(root)
    (root / 'calib.yaml').write_text('fx: 100\nfy: 100\ncx: 40\ncy: 30\n')      # no baseline, with right/
    with pytest.raises(DepthnbInputError, match='baseline'):
        Folder(root)


def test_monocular_video(tmp_path):
    for t in range(5):
        png(tmp_path / 'left' / f'frame{t * 5}.png', np.full((6, 8, 3), 10 * t, np.uint8))  # frame10 > frame5
    (tmp_path / 'calib.yaml').write_text('fx: 10\nfy: 10\ncx: 3.5\ncy: 2.5\n')
    video = Folder(tmp_path, frames=(-1, 0, 1))
    assert len(video) == 3
    s = video[2]
    assert set(s) == {'left_prev', 'left', 'left_next', 'K', 'name'} and s['name'] == 'frame15'
    assert [round(float(s[k].mean()) * 255) for k in ('left_prev', 'left', 'left_next')] == [20, 30, 40]
