"""Tests of `depthnb.data.datasets`: each dataset reads tiny files written here in its exact on-disk layout
and formats (OpenCV and hand-packed bytes for the formats, so the readers are not their own oracle), and the
transforms keep the sample's geometry consistent (projection with the new K, warping by the new disparity,
poses conjugated as 3-D points demand). Randomness must come from the transforms' own generators.
"""
from __future__ import annotations

import struct
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from depthnb.core import DepthnbInputError
from depthnb.data.datasets import (ETH3D, FT3D_K, Cityscapes, ColorAugment, Compose, DropKeys, FlyingThings3D, Kitti2015,
                                   KittiRaw, Middlebury, RandomCrop, RandomHorizontalFlip, RealPair, Resize, SelectKeys,
                                   adjust_colour, available_splits, crop_sample, flip_mono, flip_stereo, read_split)
from depthnb.geometry import backproject, pixel_grid, project, rigid_flow, warp_by_disparity

H, W = 16, 40


def rng(seed=0):
    return np.random.default_rng(seed)


def mk(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def write_rgb(path: Path, seed: int, h=H, w=W) -> np.ndarray:
    "A random RGB image written with OpenCV (BGR on disk); returns the RGB uint8 array."
    a = rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    assert cv2.imwrite(str(mk(path)), a[..., ::-1])
    return a


def as_img(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.transpose(2, 0, 1).astype(np.float32) / 255)


def write_pfm_bytes(path: Path, a: np.ndarray):
    "PFM by hand: little-endian, bottom row first."
    mk(path).write_bytes(f'Pf\n{a.shape[1]} {a.shape[0]}\n-1.0\n'.encode() + a[::-1].astype('<f4').tobytes())


def write_kitti16(path: Path, values: np.ndarray):
    assert cv2.imwrite(str(mk(path)), np.round(values * 256).astype(np.uint16))


def raises_with_path(fn, path, match=None):
    with pytest.raises(DepthnbInputError) as e:
        fn()
    assert str(path) in str(e.value), str(e.value)
    if match: assert match in str(e.value), str(e.value)


# ---------------------------------------------------------------- splits

def test_packaged_splits_found_by_importlib_resources():
    base = resources.files('depthnb.data').joinpath('splits')
    assert base.joinpath('README.md').is_file()
    assert len(read_split('eigen', 'test')) == 697
    assert len(read_split('eigen_benchmark', 'test')) == 652
    assert len(read_split('eigen_zhou', 'train')) == 39810 and len(read_split('eigen_zhou', 'val')) == 4424
    assert len(read_split('eigen_full', 'train')) == 45200
    assert read_split('odom', '09')[0] == ('9', 0, 'l')
    assert {'eigen/test_files.txt', 'eigen_zhou/train_files.txt', 'odom/test_files_10.txt'} <= set(available_splits())
    assert read_split('eigen', 'test')[0] == ('2011_09_26/2011_09_26_drive_0002_sync', 69, 'l')


def test_read_split_sources_and_errors(tmp_path):
    (tmp_path / 's.txt').write_text('2011_09_26/x_sync 5 r\n\n2011_09_26/x_sync 6 l\n')
    assert read_split(tmp_path / 's.txt') == [('2011_09_26/x_sync', 5, 'r'), ('2011_09_26/x_sync', 6, 'l')]
    assert read_split([('a/b', 1, 'l')]) == [('a/b', 1, 'l')]
    raises_with_path(lambda: read_split(tmp_path / 'nope.txt'), tmp_path / 'nope.txt')
    (tmp_path / 'bad.txt').write_text('a/b one l\n')
    raises_with_path(lambda: read_split(tmp_path / 'bad.txt'), tmp_path / 'bad.txt', 'not an integer')
    with pytest.raises(DepthnbInputError, match='available'):
        read_split('no_such_split', 'train')


# ---------------------------------------------------------------- KITTI raw

DATE, DRIVE = '2011_09_26', '2011_09_26_drive_0001_sync'
K_KITTI = np.array([[30., 0, 19.5], [0, 30, 7.5], [0, 0, 1]])
R_VC = np.array([[0., -1, 0], [0, 0, -1], [1, 0, 0]])  # velodyne (x fwd, y left, z up) → camera axes


def write_kitti_raw(root: Path, n=4, ext='.png', with_velo=True):
    "KITTI raw layout: calibration text files as KITTI ships them, images, velodyne scans."
    c2c = ('calib_time: 09-Jan-2012 13:57:47\nR_rect_00: 1 0 0 0 1 0 0 0 1\n'
           f"P_rect_02: {' '.join(map(str, np.hstack([K_KITTI, [[30 * 0.06], [0], [0]]]).ravel()))}\n"
           f"P_rect_03: {' '.join(map(str, np.hstack([K_KITTI, [[-30 * 0.48], [0], [0]]]).ravel()))}\n"
           f'S_rect_02: {W} {H}\nS_rect_03: {W} {H}\n')
    mk(root / DATE / 'calib_cam_to_cam.txt').write_text(c2c)
    (root / DATE / 'calib_velo_to_cam.txt').write_text(
        'calib_time: 15-Mar-2012 11:37:16\nR: ' + ' '.join(map(str, R_VC.ravel())) + '\nT: 0 0 0\n')
    imgs = {}
    for cam in (2, 3):
        for i in range(n):
            p = root / DATE / DRIVE / f'image_0{cam}' / 'data' / f'{i:010d}{ext}'
            if ext == '.png': imgs[cam, i] = write_rgb(p, 100 * cam + i)
            else: cv2.imwrite(str(mk(p)), np.full((H, W, 3), 40 * i, np.uint8)); imgs[cam, i] = None
    if with_velo:
        for i in range(n):
            # one point 12 m ahead on the ray of the 0-based pixel (col 10, row 4) of camera 2
            cam_pt = 12. * np.linalg.inv(K_KITTI) @ np.array([11., 5., 1.]) - np.array([0.06, 0, 0])
            pts = np.array([[*(R_VC.T @ cam_pt), 0.5], [-3., 0, 0, 1]], np.float32)  # the second is behind
            pts.tofile(mk(root / DATE / DRIVE / 'velodyne_points' / 'data' / f'{i:010d}.bin'))
    return imgs


def test_kitti_raw_stereo_video_sample(tmp_path):
    imgs = write_kitti_raw(tmp_path)
    ds = KittiRaw(tmp_path, split=[f'{DATE}/{DRIVE} 1 l', f'{DATE}/{DRIVE} 2 r'], frames=(-1, 0, 1))
    assert len(ds) == 2
    s = ds[1]
    assert set(s) == {'left', 'right', 'left_prev', 'left_next', 'right_prev', 'right_next', 'K', 'baseline', 'name'}
    # stereo pairs are always (image_02, image_03), whatever the side
    assert torch.equal(s['left'], as_img(imgs[2, 2])) and torch.equal(s['right'], as_img(imgs[3, 2]))
    assert torch.equal(s['left_prev'], as_img(imgs[2, 1])) and torch.equal(s['right_next'], as_img(imgs[3, 3]))
    assert s['K'].dtype == torch.float32 and s['K'].shape == (3, 3)
    np.testing.assert_allclose(s['K'].numpy(), K_KITTI)
    assert s['baseline'].ndim == 0 and s['baseline'].dtype == torch.float32
    assert float(s['baseline']) == pytest.approx(0.54)
    assert s['name'] == f'{DATE}/{DRIVE} 0000000002 r'
    batch = default_collate([ds[0], ds[1]])
    assert batch['left'].shape == (2, 3, H, W) and batch['K'].shape == (2, 3, 3) and len(batch['name']) == 2


def test_kitti_raw_mono_side_and_jpg(tmp_path):
    write_kitti_raw(tmp_path, ext='.jpg')
    ds = KittiRaw(tmp_path, split=[f'{DATE}/{DRIVE} 1 r', f'{DATE}/{DRIVE} 2 l'], stereo=False)
    s = ds[0]
    assert set(s) == {'left', 'K', 'name'}  # monocular: no right image, no baseline
    ref = cv2.imread(str(tmp_path / DATE / DRIVE / 'image_03' / 'data' / '0000000001.jpg'))[..., ::-1]
    assert torch.equal(s['left'], as_img(np.ascontiguousarray(ref)))  # side 'r' → image_03 as the target
    with pytest.raises(DepthnbInputError, match='.png'):
        KittiRaw(tmp_path, split=[f'{DATE}/{DRIVE} 1 l'], img_ext='.png')[0]


def test_kitti_raw_velodyne_gt_and_resize(tmp_path):
    write_kitti_raw(tmp_path)
    ds = KittiRaw(tmp_path, split=[f'{DATE}/{DRIVE} 1 l'], depth_gt=True, vel_depth=False)
    s = ds[0]
    v = s['depth_l_valid'][0]
    assert s['depth_l_valid'].dtype == torch.bool and int(v.sum()) == 1 and bool(v[4, 10])
    assert float(s['depth_l'][0, 4, 10]) == pytest.approx(12., rel=1e-5)
    assert (s['depth_l'][~s['depth_l_valid']] == 0).all()
    assert int(s['depth_r_valid'].sum()) == 1  # the same point seen by image_03
    # the Eigen protocol's depth (velodyne x): here the sensor sits at camera 0, so it is 12 m too
    s2 = KittiRaw(tmp_path, split=[f'{DATE}/{DRIVE} 1 l'], depth_gt=True)[0]
    assert float(s2['depth_l'][0, 4, 10]) == pytest.approx(12., rel=1e-5)
    r = KittiRaw(tmp_path, split=[f'{DATE}/{DRIVE} 1 l'], depth_gt=True, size=(8, 20))[0]
    assert r['left'].shape == (3, 8, 20) and r['depth_l'].shape == (1, 8, 20)
    np.testing.assert_allclose(r['K'].numpy(), [[15., 0, 9.5], [0, 15, 3.5], [0, 0, 1]], atol=1e-6)
    # nearest sampling: output (2, 5) looks at input (2·2 + 1, 2·5 + 1) = (5, 11), not at the point (4, 10)
    assert int(r['depth_l_valid'].sum()) == 0


def test_kitti_raw_errors(tmp_path):
    raises_with_path(lambda: KittiRaw(tmp_path / 'nowhere', split=['a/b 1 l']), tmp_path / 'nowhere')
    write_kitti_raw(tmp_path, with_velo=False)
    raises_with_path(lambda: KittiRaw(tmp_path, split=[f'2011_09_28/x_sync 1 l']),
                     tmp_path / '2011_09_28' / 'calib_cam_to_cam.txt')  # wrong folder layout
    ds = KittiRaw(tmp_path, split=[f'{DATE}/{DRIVE} 3 l'], frames=(0, 1))
    raises_with_path(lambda: ds[0], tmp_path / DATE / DRIVE / 'image_02' / 'data' / '0000000004.png')
    ds = KittiRaw(tmp_path, split=[f'{DATE}/{DRIVE} 1 l'], depth_gt=True)
    raises_with_path(lambda: ds[0], tmp_path / DATE / DRIVE / 'velodyne_points' / 'data' / '0000000001.bin')
    bad = tmp_path / DATE / DRIVE / 'image_03' / 'data' / '0000000002.png'
    bad.write_bytes(b'\x89PNG\r\n\x1a\n' + b'\x00garbage' * 20)
    raises_with_path(lambda: KittiRaw(tmp_path, split=[f'{DATE}/{DRIVE} 2 l'])[0], bad)
    with pytest.raises(DepthnbInputError, match='frames'):
        KittiRaw(tmp_path, split=[f'{DATE}/{DRIVE} 2 l'], frames=(-2, 0))
    with pytest.raises(IndexError):
        KittiRaw(tmp_path, split=[f'{DATE}/{DRIVE} 2 l'])[5]


# ---------------------------------------------------------------- KITTI 2015

def write_kitti2015(root: Path, n=2, gt=True, calib=True):
    base = root / 'training'
    for i in range(n):
        for cam in (2, 3):
            for t in (10, 11): write_rgb(base / f'image_{cam}' / f'{i:06d}_{t}.png', 1000 + 100 * i + 10 * cam + t)
        if gt:
            occ = np.full((H, W), 12.25); occ[0, :5] = 0; occ[3, 7] = 80.5
            noc = occ.copy(); noc[5, :3] = 0  # 3 pixels with GT that the right camera does not see
            write_kitti16(base / 'disp_occ_0' / f'{i:06d}_10.png', occ)
            write_kitti16(base / 'disp_noc_0' / f'{i:06d}_10.png', noc)
            u = np.full((H, W), 1.5); v = np.full((H, W), -2.25); valid = np.ones((H, W), np.uint16); valid[1, 1] = 0
            flow = np.stack([valid, np.round(v * 64 + 2**15), np.round(u * 64 + 2**15)], -1).astype(np.uint16)
            assert cv2.imwrite(str(mk(base / 'flow_occ' / f'{i:06d}_10.png')), flow)  # BGR = valid, v, u
        if calib:
            mk(base / 'calib_cam_to_cam' / f'{i:06d}.txt').write_text(
                'calib_time: 09-Jan-2012 13:57:47\nR_rect_00: 1 0 0 0 1 0 0 0 1\n'
                'P_rect_02: 30 0 19.5 1.8 0 30 7.5 0 0 0 1 0\nP_rect_03: 30 0 19.5 -14.4 0 30 7.5 0 0 0 1 0\n')


def test_kitti2015_sample(tmp_path):
    write_kitti2015(tmp_path)
    ds = Kitti2015(tmp_path)
    assert len(ds) == 2
    s = ds[1]
    assert set(s) == {'left', 'right', 'left_next', 'right_next', 'disp_l', 'disp_l_valid', 'occ_l', 'occ_l_valid',
                      'flow_next', 'flow_next_valid', 'K', 'baseline', 'name'}
    ref = cv2.imread(str(tmp_path / 'training' / 'image_2' / '000001_11.png'))[..., ::-1]
    assert torch.equal(s['left_next'], as_img(np.ascontiguousarray(ref)))
    assert float(s['disp_l'][0, 2, 2]) == 12.25 and float(s['disp_l'][0, 3, 7]) == 80.5
    assert not s['disp_l_valid'][0, 0, 0] and float(s['disp_l'][0, 0, 0]) == 0
    assert int(s['occ_l'].sum()) == 3 and bool(s['occ_l'][0, 5, 0]) and s['occ_l'].dtype == torch.float32
    assert s['flow_next'].shape == (2, H, W)
    assert float(s['flow_next'][0, 4, 4]) == 1.5 and float(s['flow_next'][1, 4, 4]) == -2.25
    assert not s['flow_next_valid'][0, 1, 1] and s['flow_next_valid'].sum() == H * W - 1
    assert float(s['baseline']) == pytest.approx(0.54) and float(s['K'][0, 0]) == 30
    assert s['name'] == '000001'


def test_kitti2015_testing_has_no_gt(tmp_path):
    write_kitti2015(tmp_path, gt=False, calib=False)
    (tmp_path / 'testing').symlink_to(tmp_path / 'training')
    s = Kitti2015(tmp_path, subset='testing')[0]
    assert set(s) == {'left', 'right', 'left_next', 'right_next', 'name'}


def test_kitti2015_errors(tmp_path):
    raises_with_path(lambda: Kitti2015(tmp_path), tmp_path / 'training')
    write_kitti2015(tmp_path)
    bad = tmp_path / 'training' / 'disp_occ_0' / '000000_10.png'
    bad.write_bytes(b'not a png at all' * 8)
    raises_with_path(lambda: Kitti2015(tmp_path)[0], bad)
    (tmp_path / 'training' / 'flow_occ' / '000001_10.png').unlink()
    raises_with_path(lambda: Kitti2015(tmp_path)[1], tmp_path / 'training' / 'flow_occ' / '000001_10.png', 'not found')


# ---------------------------------------------------------------- FlyingThings3D

def write_ft3d(root: Path, h=H, w=W):
    out = {}
    for seq, frame in (('0000', '0006'), ('0001', '0007')):
        for view in ('left', 'right'):
            write_rgb(root / 'frames_cleanpass' / 'TRAIN' / 'A' / seq / view / f'{frame}.png', 10 * int(seq) + (view == 'right'), h, w)
            d = rng(int(seq) + (view == 'right')).uniform(1, 50, (h, w)).astype(np.float32)
            d[0, 0] = np.inf
            write_pfm_bytes(root / 'disparity' / 'TRAIN' / 'A' / seq / view / f'{frame}.pfm', d)
            out[seq, view] = d
    return out


def test_flyingthings3d_sample(tmp_path):
    disp = write_ft3d(tmp_path)
    ds = FlyingThings3D(tmp_path)
    assert len(ds) == 2
    s = ds[1]
    assert set(s) == {'left', 'right', 'disp_l', 'disp_l_valid', 'disp_r', 'disp_r_valid', 'name'}  # no K at 16×40
    np.testing.assert_array_equal(s['disp_r'][0, 1:].numpy(), disp['0001', 'right'][1:])
    assert not s['disp_l_valid'][0, 0, 0] and float(s['disp_l'][0, 0, 0]) == 0  # inf → invalid
    assert s['disp_l_valid'].sum() == H * W - 1
    assert s['name'] == 'TRAIN/A/0001/0007'


def test_flyingthings3d_full_size_has_K(tmp_path):
    root = tmp_path
    cv2.imwrite(str(mk(root / 'frames_finalpass' / 'TEST' / 'B' / '0003' / 'left' / '0010.png')), np.zeros((540, 960, 3), np.uint8))
    cv2.imwrite(str(mk(root / 'frames_finalpass' / 'TEST' / 'B' / '0003' / 'right' / '0010.png')), np.zeros((540, 960, 3), np.uint8))
    for v in ('left', 'right'): write_pfm_bytes(root / 'disparity' / 'TEST' / 'B' / '0003' / v / '0010.pfm', np.ones((540, 960)))
    s = FlyingThings3D(root, 'TEST', render_pass='final')[0]
    np.testing.assert_allclose(s['K'].numpy(), FT3D_K)


def test_flyingthings3d_errors(tmp_path):
    raises_with_path(lambda: FlyingThings3D(tmp_path), tmp_path / 'frames_cleanpass' / 'TRAIN')
    write_ft3d(tmp_path)
    bad = tmp_path / 'disparity' / 'TRAIN' / 'A' / '0000' / 'right' / '0006.pfm'
    bad.write_bytes(b'PX\n40 16\n-1.0\n' + bytes(40 * 16 * 4))
    raises_with_path(lambda: FlyingThings3D(tmp_path)[0], bad, 'header')
    write_pfm_bytes(bad, -np.ones((H, W)))
    raises_with_path(lambda: FlyingThings3D(tmp_path)[0], bad, 'negative')
    bad.unlink()
    raises_with_path(lambda: FlyingThings3D(tmp_path)[0], bad, 'not found')


# ---------------------------------------------------------------- Cityscapes

def test_cityscapes_sample(tmp_path):
    img = write_rgb(tmp_path / 'leftImg8bit' / 'val' / 'frankfurt' / 'frankfurt_000000_000294_leftImg8bit.png', 7)
    lab = np.zeros((H, W), np.uint8); lab[:5] = 7; lab[5:9] = 26; lab[9:] = 3
    cv2.imwrite(str(mk(tmp_path / 'gtFine' / 'val' / 'frankfurt' / 'frankfurt_000000_000294_gtFine_labelIds.png')), lab)
    s = Cityscapes(tmp_path, 'val')[0]
    assert set(s) == {'left', 'semantic', 'name'} and s['name'] == 'frankfurt/frankfurt_000000_000294'
    assert torch.equal(s['left'], as_img(img))
    assert s['semantic'].shape == (1, H, W) and s['semantic'].dtype == torch.int64
    assert (s['semantic'][0, :5] == 0).all() and (s['semantic'][0, 5:9] == 13).all() and (s['semantic'][0, 9:] == 255).all()


def test_cityscapes_errors(tmp_path):
    raises_with_path(lambda: Cityscapes(tmp_path), tmp_path / 'leftImg8bit' / 'train')
    write_rgb(tmp_path / 'leftImg8bit' / 'train' / 'x.png', 0)  # no <city>/ folder: wrong layout
    raises_with_path(lambda: Cityscapes(tmp_path), tmp_path / 'leftImg8bit' / 'train')


# ---------------------------------------------------------------- Middlebury, ETH3D

def write_scene(sc: Path, grey=False, gt='disp0GT.pfm', mask=True, doffs=2.5):
    if grey:
        for n, seed in (('im0.png', 1), ('im1.png', 2)):
            cv2.imwrite(str(mk(sc / n)), rng(seed).integers(0, 256, (H, W), dtype=np.uint8))
    else:
        write_rgb(sc / 'im0.png', 1); write_rgb(sc / 'im1.png', 2)
    (sc / 'calib.txt').write_text(f'cam0=[50 0 19.5; 0 50 7.5; 0 0 1]\ncam1=[50 0 {19.5 + doffs}; 0 50 7.5; 0 0 1]\n'
                                  f'doffs={doffs}\nbaseline=193.001\nwidth={W}\nheight={H}\nndisp=64\nisint=0\n')
    d = np.full((H, W), 8.5, np.float32); d[2, :4] = np.inf
    if gt: write_pfm_bytes(sc / gt, d)
    if mask:
        m = np.full((H, W), 255, np.uint8); m[6, 10:13] = 128; m[2, :4] = 0
        cv2.imwrite(str(sc / 'mask0nocc.png'), m)


def test_middlebury_scenes(tmp_path):
    write_scene(tmp_path / 'Motorcycle'); write_scene(tmp_path / 'Piano', gt='disp0.pfm', mask=False)
    (tmp_path / 'notes').mkdir()
    ds = Middlebury(tmp_path)
    assert len(ds) == 2
    s = ds[0]
    assert s['name'] == 'Motorcycle'
    assert set(s) == {'left', 'right', 'K', 'baseline', 'doffs', 'disp_l', 'disp_l_valid', 'occ_l', 'occ_l_valid', 'name'}
    assert float(s['baseline']) == pytest.approx(0.193001) and float(s['doffs']) == 2.5
    assert not s['disp_l_valid'][0, 2, 0] and float(s['disp_l'][0, 2, 0]) == 0 and float(s['disp_l'][0, 3, 0]) == 8.5
    assert int(s['occ_l'].sum()) == 3 and bool(s['occ_l'][0, 6, 11])
    assert torch.equal(s['occ_l_valid'], s['disp_l_valid'])
    assert 'occ_l' not in ds[1] and 'disp_l' in ds[1]
    assert len(Middlebury(tmp_path / 'Piano')) == 1  # a scene folder itself


def test_eth3d_grey_and_no_gt(tmp_path):
    write_scene(tmp_path / 'delivery_area_1l', grey=True, doffs=0.)
    write_scene(tmp_path / 'lakeside_1l', grey=True, gt=None, mask=False, doffs=0.)
    ds = ETH3D(tmp_path)
    s = ds[0]
    assert s['left'].shape == (3, H, W) and torch.equal(s['left'][0], s['left'][2])
    assert float(s['doffs']) == 0 and 'disp_l' in s
    assert set(ds[1]) == {'left', 'right', 'K', 'baseline', 'doffs', 'name'}


def test_two_view_errors(tmp_path):
    raises_with_path(lambda: Middlebury(tmp_path), tmp_path, 'im0.png')
    write_scene(tmp_path / 'A')
    (tmp_path / 'A' / 'calib.txt').unlink()
    raises_with_path(lambda: Middlebury(tmp_path)[0], tmp_path / 'A' / 'calib.txt', 'not found')
    write_scene(tmp_path / 'A')
    (tmp_path / 'A' / 'disp0GT.pfm').write_bytes(b'Pf\n40 16\n-1.0\n' + bytes(10))
    raises_with_path(lambda: Middlebury(tmp_path)[0], tmp_path / 'A' / 'disp0GT.pfm')


# ---------------------------------------------------------------- the Motorcycle pair

def test_real_pair_schema_and_depth_scale():
    s2, s4 = RealPair(2)[0], RealPair(4)[0]
    assert s2['left'].shape == (3, 250, 370) and s2['disp_l'].shape == (1, 250, 370)
    assert s2['disp_l_valid'].dtype == torch.bool and 0.5 < s2['disp_l_valid'].float().mean() < 1
    assert float(s2['baseline']) == pytest.approx(0.193001)
    # depth = f·B/(d + doffs) does not depend on the scale; f·B/d would
    def depth(s, y, x):
        return float(s['K'][0, 0] * s['baseline'] / (s['disp_l'][0, y, x] + s['doffs']))
    ys, xs = torch.nonzero(s4['disp_l_valid'][0, 20:-20, 20:-20], as_tuple=True)
    d4 = torch.tensor([depth(s4, y + 20, x + 20) for y, x in zip(ys[::97], xs[::97])])
    d2 = torch.tensor([depth(s2, 2 * (y + 20) + 1, 2 * (x + 20) + 1) for y, x in zip(ys[::97], xs[::97])])
    assert (d4 - d2).abs().median() < 0.02 * d4.median()
    assert 1.5 < float(d4.median()) < 6  # metres: a motorcycle a few metres away


# ---------------------------------------------------------------- transforms: Resize and crop

def stereo_sample(h=12, w=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = dict(left=torch.rand(3, h, w, generator=g), right=torch.rand(3, h, w, generator=g),
             disp_l=1 + 5 * torch.rand(1, h, w, generator=g), disp_r=1 + 5 * torch.rand(1, h, w, generator=g),
             occ_l=(torch.rand(1, h, w, generator=g) > 0.8).float(), occ_r=(torch.rand(1, h, w, generator=g) > 0.8).float(),
             K=torch.tensor([[25., 0.3, 14.2], [0, 24, 5.7], [0, 0, 1]]), baseline=torch.tensor(0.3), name='s')
    return s


@pytest.mark.parametrize('size', [(6, 12), (5, 17), (24, 45)])
def test_resize_K_consistent_with_projection(size):
    s = stereo_sample()
    h0, w0 = s['left'].shape[-2:]
    r = Resize(size)(s)
    h, w = size
    depth = 2 + torch.rand(1, 1, h0, w0, generator=torch.Generator().manual_seed(1))
    pts = backproject(depth, torch.linalg.inv(s['K'])[None])
    pix, z = project(pts, r['K'][None])
    grid = pixel_grid(h0, w0)[0]
    torch.testing.assert_close(pix[0, 0], (grid[0] + 0.5) * w / w0 - 0.5, atol=1e-4, rtol=0)
    torch.testing.assert_close(pix[0, 1], (grid[1] + 0.5) * h / h0 - 0.5, atol=1e-4, rtol=0)
    torch.testing.assert_close(z, depth)
    # and back: the resized pixel grid back-projects onto rays of the original camera at the mapped positions
    pts2 = backproject(torch.ones(1, 1, h, w), torch.linalg.inv(r['K'])[None])
    pix0, _ = project(pts2, s['K'][None])
    g2 = pixel_grid(h, w)[0]
    torch.testing.assert_close(pix0[0, 0], (g2[0] + 0.5) * w0 / w - 0.5, atol=1e-4, rtol=0)


def test_resize_values():
    s = stereo_sample(h=8, w=24)
    s['flow_next'] = torch.stack([torch.full((8, 24), 3.), torch.full((8, 24), -2.)])
    s['semantic'] = torch.randint(0, 19, (1, 8, 24), generator=torch.Generator().manual_seed(0))
    s['disp_l'] = torch.full((1, 8, 24), 6.)
    r = Resize((4, 8))(s)
    torch.testing.assert_close(r['disp_l'], torch.full((1, 4, 8), 2.))  # × w'/w = 1/3
    torch.testing.assert_close(r['flow_next'][0], torch.full((4, 8), 1.))  # u × 1/3
    torch.testing.assert_close(r['flow_next'][1], torch.full((4, 8), -1.))  # v × 1/2
    assert r['semantic'].dtype == torch.int64
    assert torch.equal(r['semantic'], s['semantic'][:, 1::2, 1::3])  # nearest: centres (2i + 0.5, 3j + 1)
    assert r['name'] == 's' and torch.equal(r['baseline'], s['baseline'])
    # images: bilinear with antialias (torch's reference call)
    ref = torch.nn.functional.interpolate(s['left'][None], (4, 8), mode='bilinear', align_corners=False, antialias=True)[0]
    torch.testing.assert_close(r['left'], ref)


def test_resize_sparse_maps_never_blend_invalid():
    d = torch.zeros(1, 8, 8); v = torch.zeros(1, 8, 8, dtype=torch.bool)
    d[0, ::2, ::2] = 10 + torch.arange(16.).reshape(4, 4); v[0, ::2, ::2] = True
    s = dict(left=torch.rand(3, 8, 8), disp_l=d, disp_l_valid=v, depth_l=d.clone(), depth_l_valid=v.clone())
    up = Resize((16, 16))(s)
    vals = up['depth_l'][up['depth_l_valid']]
    assert set(vals.tolist()) <= set(d[v].tolist())  # only original values, never a blend with 0
    assert (up['depth_l'][~up['depth_l_valid']] == 0).all()
    torch.testing.assert_close(up['disp_l'][up['disp_l_valid']], 2 * up['depth_l'][up['depth_l_valid']])
    down = Resize((4, 4))(s)  # output (i, j) samples input (2i + 1, 2j + 1): all invalid here
    assert not down['depth_l_valid'].any()


def test_resize_unknown_and_kinds():
    s = dict(left=torch.rand(3, 4, 4), heat=torch.rand(1, 4, 4))
    with pytest.raises(DepthnbInputError, match='heat'):
        Resize((2, 2))(s)
    r = Resize((2, 2), kinds={'heat': 'depth'})(s)
    assert r['heat'].shape == (1, 2, 2)
    with pytest.raises(DepthnbInputError, match='H×W'):
        Resize((2, 2))(dict(left=torch.rand(3, 4, 4), disp_l=torch.rand(1, 4, 5)))
    with pytest.raises(DepthnbInputError):
        Resize((0, 3))


def test_crop_same_window_and_K():
    s = stereo_sample()
    idx = torch.arange(12 * 30.).reshape(1, 12, 30)
    s['depth_l'] = idx.clone() + 1
    c = RandomCrop((5, 9), seed=7)(s)
    top, left = divmod(int(c['depth_l'][0, 0, 0] - 1), 30)
    for k in ('left', 'right', 'disp_l', 'disp_r', 'occ_l', 'occ_r', 'depth_l'):
        assert torch.equal(c[k], s[k][:, top:top + 5, left:left + 9]), k
    torch.testing.assert_close(c['K'][:2, 2], s['K'][:2, 2] - torch.tensor([left, top], dtype=torch.float32))
    # the same 3-D point projects to the same image content
    pts = torch.tensor([[0.4], [-0.1], [3.]]).reshape(1, 3, 1, 1)
    p0, _ = project(pts, s['K'][None]); p1, _ = project(pts, c['K'][None])
    torch.testing.assert_close(p1 + torch.tensor([left, top]).reshape(1, 2, 1, 1), p0)
    with pytest.raises(DepthnbInputError, match='does not fit'):
        crop_sample(s, 10, 0, (5, 9))


def test_random_transforms_use_their_own_generator():
    s = stereo_sample()
    torch.manual_seed(123); expected = torch.rand(3)
    torch.manual_seed(123)
    crops = [RandomCrop((4, 6), seed=1)(s)['left'] for _ in range(2)]
    flips = [RandomHorizontalFlip(seed=5)(s)['left'] for _ in range(2)]
    augs = [ColorAugment(seed=3)(s)['left_aug'] for _ in range(2)]
    assert torch.equal(torch.rand(3), expected)  # the global generator was not touched
    assert torch.equal(crops[0], crops[1]) and torch.equal(flips[0], flips[1]) and torch.equal(augs[0], augs[1])
    g = torch.Generator().manual_seed(9)
    t = RandomCrop((4, 6), generator=g)
    windows = {tuple(t(dict(s, depth_l=torch.arange(360.).reshape(1, 12, 30)))['depth_l'][0, 0, :1].tolist()) for _ in range(8)}
    assert len(windows) > 2  # successive calls draw new windows
    with pytest.raises(DepthnbInputError, match='Generator'):
        RandomCrop((4, 6), generator=1)


class _Crops(torch.utils.data.Dataset):
    def __init__(self): self.t = RandomCrop((2, 2), seed=0)
    def __len__(self): return 4
    def __getitem__(self, i): return self.t(dict(depth_l=torch.arange(100.).reshape(1, 10, 10)))['depth_l'][0, 0, 0]


def test_random_transforms_differ_across_workers():
    torch.manual_seed(0)
    a = torch.cat([b for b in DataLoader(_Crops(), batch_size=1, num_workers=2)])
    torch.manual_seed(0)
    b = torch.cat([b for b in DataLoader(_Crops(), batch_size=1, num_workers=2)])
    assert torch.equal(a, b)  # reproducible when the DataLoader is seeded
    assert a[0] != a[1] or a[2] != a[3]  # workers 0 and 1 do not draw the same windows


# ---------------------------------------------------------------- transforms: flips

def shifted_pair(h=8, w=32, seed=0):
    "left(x) = right(x − d(y)): an exact pair with row-dependent integer disparity."
    g = torch.Generator().manual_seed(seed)
    right = torch.rand(3, h, w, generator=g)
    dy = 2 + torch.arange(h) % 4
    left = torch.stack([torch.roll(right[:, y], int(dy[y]), -1) for y in range(h)], 1)
    disp = dy.float().reshape(1, h, 1).expand(1, h, w).clone()
    return dict(left=left, right=right, disp_l=disp, disp_r=disp.clone(), disp_l_valid=torch.ones(1, h, w, dtype=torch.bool),
                disp_r_valid=torch.ones(1, h, w, dtype=torch.bool),
                K=torch.tensor([[20., 0, 14.], [0, 20, 3.5], [0, 0, 1]]), baseline=torch.tensor(0.2), name='p')


def reconstruction_error(s):
    warped, inside = warp_by_disparity(s['right'][None], s['disp_l'][None])
    ok = inside & (pixel_grid(*s['left'].shape[-2:])[:, :1] >= 6)  # away from torch.roll's wrap-around
    return (warped - s['left'][None]).abs()[ok.expand_as(warped)].max()


def test_stereo_flip_keeps_the_pair_consistent():
    p = shifted_pair()
    assert reconstruction_error(p) < 1e-5
    f = flip_stereo(p)
    assert reconstruction_error(f) < 1e-5
    assert torch.equal(f['left'], torch.flip(p['right'], (-1,))) and torch.equal(f['right'], torch.flip(p['left'], (-1,)))
    assert torch.equal(f['disp_l'], torch.flip(p['disp_r'], (-1,))) and (f['disp_l'] > 0).all()
    assert float(f['K'][0, 2]) == 32 - 1 - 14.
    back = flip_stereo(f)
    for k in ('left', 'right', 'disp_l', 'disp_r', 'K'): assert torch.equal(back[k], p[k]), k
    # the flipped sample's disparity also holds for an independent warp (OpenCV remap, x − d)
    rr = np.ascontiguousarray(f['right'].permute(1, 2, 0).numpy())
    xs, ys = np.meshgrid(np.arange(32, dtype=np.float32), np.arange(8, dtype=np.float32))
    warped = cv2.remap(rr, xs - f['disp_l'][0].numpy(), ys, cv2.INTER_LINEAR)
    np.testing.assert_allclose(warped[:, 6:], f['left'].permute(1, 2, 0).numpy()[:, 6:], atol=1e-5)


def test_stereo_flip_occ_depth_doffs_and_refusals():
    s = stereo_sample()
    s['depth_l'], s['depth_r'] = torch.rand(1, 12, 30) + 1, torch.rand(1, 12, 30) + 1
    s['doffs'] = torch.tensor(2.)
    f = flip_stereo(s)
    assert torch.equal(f['occ_l'], torch.flip(s['occ_r'], (-1,))) and torch.equal(f['depth_r'], torch.flip(s['depth_l'], (-1,)))
    assert float(f['K'][0, 2]) == pytest.approx(30 - 1 - (14.2 + 2.)) and float(f['K'][0, 1]) == pytest.approx(-0.3)
    with pytest.raises(DepthnbInputError, match="needs 'disp_r'"):
        flip_stereo({k: v for k, v in s.items() if k != 'disp_r'})
    with pytest.raises(DepthnbInputError, match='semantic'):
        flip_stereo(dict(s, semantic=torch.zeros(1, 12, 30, dtype=torch.int64)))
    with pytest.raises(DepthnbInputError, match='right'):
        flip_stereo(dict(left=s['left'], disp_l=s['disp_l']))
    with pytest.raises(DepthnbInputError, match="needs 'disp_r'"):
        RandomHorizontalFlip(p=1.)(dict(left=s['left'], right=s['right'], disp_l=s['disp_l']))


def random_pose(seed):
    from scipy.spatial.transform import Rotation
    r = np.random.default_rng(seed)
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(r.normal(scale=0.1, size=3)).as_matrix(); T[:3, 3] = r.normal(scale=0.5, size=3)
    return torch.tensor(T, dtype=torch.float32)


def test_flip_poses_follow_the_points():
    S = np.diag([-1., 1, 1])
    T = random_pose(0)
    X = np.random.default_rng(1).normal(size=(3, 20)) + np.array([[0], [0], [5]])
    Xn = T[:3, :3].double().numpy() @ X + T[:3, 3:].double().numpy()
    # mono: the mirrored world: points S X, the pose maps S X_t to S X_n
    m = flip_mono(dict(left=torch.rand(3, 4, 6), T_next=T))
    Tm = m['T_next'].double().numpy()
    np.testing.assert_allclose(Tm[:3, :3] @ (S @ X) + Tm[:3, 3:], S @ Xn, atol=1e-5)
    # stereo: the new left camera is the mirrored right camera, X_r = X − (B, 0, 0)
    B = 0.54
    s = dict(left=torch.rand(3, 4, 6), right=torch.rand(3, 4, 6), T_prev=T, baseline=torch.tensor(B))
    Ts = flip_stereo(s)['T_prev'].double().numpy()
    b = np.array([[B], [0], [0]])
    np.testing.assert_allclose(Ts[:3, :3] @ (S @ (X - b)) + Ts[:3, 3:], S @ (Xn - b), atol=1e-5)
    with pytest.raises(DepthnbInputError, match='baseline'):
        flip_stereo(dict(left=s['left'], right=s['right'], T_prev=T))


def test_mono_flip():
    K = torch.tensor([[20., 0, 7.3], [0, 20, 2.], [0, 0, 1]])
    s = dict(left=torch.rand(3, 5, 16), left_next=torch.rand(3, 5, 16), depth_l=torch.rand(1, 5, 16) + 1,
             flow_next=torch.randn(2, 5, 16), flow_next_valid=torch.rand(1, 5, 16) > 0.5,
             semantic=torch.randint(0, 5, (1, 5, 16)), K=K)
    f = flip_mono(s)
    assert torch.equal(f['left_next'], torch.flip(s['left_next'], (-1,)))
    assert torch.equal(f['flow_next'][0], -torch.flip(s['flow_next'][0], (-1,)))
    assert torch.equal(f['flow_next'][1], torch.flip(s['flow_next'][1], (-1,)))
    assert torch.equal(f['flow_next_valid'], torch.flip(s['flow_next_valid'], (-1,)))
    # a 3-D point's mirror image S X projects with the new K to the mirrored pixel W − 1 − x
    X = torch.tensor([0.7, -0.3, 4.]).reshape(1, 3, 1, 1)
    p, _ = project(X, K[None]); q, _ = project(X * torch.tensor([-1., 1, 1]).reshape(1, 3, 1, 1), f['K'][None])
    torch.testing.assert_close(q[0, 0], 16 - 1 - p[0, 0]); torch.testing.assert_close(q[0, 1], p[0, 1])
    back = flip_mono(f)
    for k in s: torch.testing.assert_close(back[k], s[k], atol=1e-6, rtol=0, msg=k)
    with pytest.raises(DepthnbInputError, match='flip_stereo'):
        flip_mono(stereo_sample())
    assert torch.equal(RandomHorizontalFlip(p=1., mono=True)(s)['left'], f['left'])


def test_mono_flip_keeps_rigid_flow_consistent():
    "flow = rigid_flow(depth, T, K) must still hold after mirroring depth and flow, S T S and the new K."
    h, w = 10, 24
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing='ij')
    depth = (4 + 0.1 * xx + 0.05 * yy + 0.3 * torch.sin(xx / 3))[None]
    K = torch.tensor([[18., 0, 10.3], [0, 18, 4.6], [0, 0, 1]], dtype=torch.float64)
    T = random_pose(3).double()
    flow = rigid_flow(depth[None], T[None], K[None])[0]
    s = dict(left=torch.rand(3, h, w), depth_l=depth, T_next=T, flow_next=flow, rigid_flow_next=flow.clone(), K=K)
    f = flip_mono(s)
    torch.testing.assert_close(rigid_flow(f['depth_l'][None], f['T_next'][None], f['K'][None])[0], f['flow_next'])
    torch.testing.assert_close(f['rigid_flow_next'], f['flow_next'])


def renderer_like_sample(h=8, w=20):
    "A sample with the key set of depthnb.data.synthetic's SyntheticVideo (random values, right shapes and types)."
    g = torch.Generator().manual_seed(0)
    img, m1 = (lambda: torch.rand(3, h, w, generator=g)), (lambda: torch.rand(1, h, w, generator=g) + 1)
    s = dict(left=img(), right=img(), disp_l=m1(), disp_r=m1(), depth_l=m1(), depth_r=m1(), occ_l=m1() - 1, occ_r=m1() - 1,
             K=torch.tensor([[10., 0, 9.5], [0, 10, 3.5], [0, 0, 1]]), baseline=torch.tensor(0.5),
             semantic=torch.randint(0, 10, (1, h, w), generator=g), instance=torch.randint(0, 4, (1, h, w), generator=g),
             moving=torch.rand(1, h, w, generator=g) > 0.7, name='street-0-000000')
    for n in ('prev', 'next'):
        s.update({f'left_{n}': img(), f'right_{n}': img(), f'T_{n}': random_pose(1), f'flow_{n}': torch.randn(2, h, w, generator=g),
                  f'rigid_flow_{n}': torch.randn(2, h, w, generator=g), f'flow_{n}_inv': torch.randn(2, h, w, generator=g)})
    return s


def test_transforms_on_the_renderer_schema():
    s = renderer_like_sample()
    r = Compose([Resize((4, 10)), RandomCrop((4, 8)), ColorAugment()])(s)
    assert r['moving'].dtype == torch.bool and r['instance'].dtype == torch.int64 and r['flow_prev_inv'].shape == (2, 4, 8)
    ref = torch.nn.functional.interpolate(s['rigid_flow_next'][None], (4, 10), mode='bilinear', align_corners=False)[0]
    torch.testing.assert_close(Resize((4, 10))(s)['rigid_flow_next'], ref * 0.5)  # a flow: u × 10/20, v × 4/8
    mono = DropKeys(['right', 'right_prev', 'right_next', 'disp_l', 'disp_r', 'depth_r', 'occ_l', 'occ_r'])(s)
    f = RandomHorizontalFlip(p=1., mono=True)(mono)
    assert torch.equal(f['flow_prev_inv'][0], -torch.flip(s['flow_prev_inv'][0], (-1,)))
    with pytest.raises(DepthnbInputError, match='DropKeys'):
        flip_stereo(s)
    st = SelectKeys(['left', 'right', 'disp_l', 'disp_r', 'occ_l', 'occ_r', 'depth_l', 'depth_r', 'K', 'baseline',
                     'left_prev', 'right_prev', 'T_prev'])(s)
    assert torch.equal(flip_stereo(st)['left_prev'], torch.flip(s['right_prev'], (-1,)))
    with pytest.raises(DepthnbInputError, match='SelectKeys'):
        SelectKeys(['left', 'semantic_r'])(s)


# ---------------------------------------------------------------- transforms: colour

def test_color_augment_leaves_the_loss_images_alone():
    s = stereo_sample()
    s['left_prev'] = torch.rand(3, 12, 30)
    before = {k: v.clone() for k, v in s.items() if isinstance(v, torch.Tensor)}
    a = ColorAugment(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2, seed=4)(s)
    for k, v in before.items():
        assert torch.equal(a[k], v) and torch.equal(s[k], v), k  # bit-identical, input not modified
    assert set(a) - set(s) == {'left_aug', 'right_aug', 'left_prev_aug'}
    assert not torch.equal(a['left_aug'], s['left'])
    same = ColorAugment(seed=4)(dict(left=s['left'], right=s['left'].clone()))
    assert torch.equal(same['left_aug'], same['right_aug'])  # one draw for all images of a sample
    none = ColorAugment(p=0., seed=4)(s)
    assert torch.equal(none['left_aug'], s['left']) and none['left_aug'] is not s['left']


def adjust_colour_reference(x: np.ndarray, b, c, s, h) -> np.ndarray:
    "torchvision's documented definitions in NumPy, with the standard library's colorsys for the hue rotation."
    import colorsys
    grey = lambda a: 0.2989 * a[0] + 0.587 * a[1] + 0.114 * a[2]
    x = np.clip(x * b, 0, 1)
    x = np.clip(c * x + (1 - c) * grey(x).mean(), 0, 1)
    x = np.clip(s * x + (1 - s) * grey(x)[None], 0, 1)
    out = np.empty_like(x)
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            hh, ss, vv = colorsys.rgb_to_hsv(*x[:, i, j])
            out[:, i, j] = colorsys.hsv_to_rgb((hh + h) % 1, ss, vv)
    return out


def test_adjust_colour_matches_reference():
    x = torch.rand(3, 9, 11, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for b, c, s, h in [(1.2, 0.8, 1.3, 0.07), (0.7, 1.25, 0.6, -0.1), (1., 1., 1., 0.5), (1., 1., 1., 0.)]:
        np.testing.assert_allclose(adjust_colour(x, b, c, s, h).numpy(), adjust_colour_reference(x.numpy(), b, c, s, h), atol=1e-9)


def test_compose_pipeline_on_a_dataset(tmp_path):
    write_kitti_raw(tmp_path)
    t = Compose([RandomCrop((12, 32), seed=0), RandomHorizontalFlip(p=1.), ColorAugment(seed=0)])
    ds = KittiRaw(tmp_path, split=[f'{DATE}/{DRIVE} 1 l', f'{DATE}/{DRIVE} 2 l'], frames=(-1, 0, 1), depth_gt=True,
                  transform=t)
    batch = default_collate([ds[0], ds[1]])
    assert batch['left'].shape == (2, 3, 12, 32) and batch['left_prev_aug'].shape == (2, 3, 12, 32)
    assert batch['depth_l'].shape == (2, 1, 12, 32) and batch['baseline'].shape == (2,)
    with pytest.raises(DepthnbInputError, match='callable'):
        Compose([Resize((4, 4)), 3])
