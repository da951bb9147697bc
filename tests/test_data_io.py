"""Tests of `depthnb.data.io` against independent references.

Every format is checked both ways: files written by `depthnb` are read by an independent reader (Pillow for
8- and 16-bit grey and 8-bit RGB images, a plain-Python PNG decoder for 16-bit RGB, `struct`, NumPy on the
raw bytes), and files made by an independent writer (Pillow, a plain-Python PNG encoder of all five scanline
filters, hand-packed bytes, text written line by line as the datasets ship it) are read by `depthnb`, which
decodes images with OpenCV. The velodyne projection is compared with a loop-based re-implementation of
monodepth2's `generate_depth_map`. Bad input (missing, corrupt or malformed files) must raise
`DepthnbInputError` naming the path; `tests/test_fuzz_readers.py` feeds the readers damaged files at random.
"""
from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from depthnb.core import DepthnbInputError
from depthnb.data.io import (CITYSCAPES_TRAIN_CLASSES, cityscapes_labelid_to_trainid, kitti_stereo_calib,
                             read_calib_file, read_flo, read_image, read_kitti_flow, read_kitti_png, read_label_png,
                             read_middlebury_calib, read_pfm, read_velodyne, velodyne_to_depth, write_calib_file,
                             write_flo, write_image, write_kitti_flow, write_kitti_png, write_middlebury_calib,
                             write_pfm, write_velodyne)

ROOT = Path(__file__).resolve().parents[1]


def rng(seed=0):
    return np.random.default_rng(seed)


def raises_with_path(fn, path, match=None):
    with pytest.raises(DepthnbInputError) as e:
        fn()
    assert str(path) in str(e.value), str(e.value)
    if match: assert match in str(e.value), str(e.value)


def pil_bytes(a: np.ndarray, fmt='PNG', mode=None, **kw) -> bytes:
    "An independent image writer: Pillow (8-bit grey / RGB / palette, 16-bit grey as mode I;16, JPEG)."
    f = io.BytesIO()
    Image.fromarray(a, mode).save(f, format=fmt, **kw) if mode else Image.fromarray(a).save(f, format=fmt, **kw)
    return f.getvalue()


def pil_read(path) -> np.ndarray:
    "An independent image reader: Pillow (8-bit, and 16-bit grey as uint16)."
    with Image.open(path) as im:
        return np.asarray(im).copy()


def png_chunk(tag, data):
    return struct.pack('>I', len(data)) + tag + data + struct.pack('>I', zlib.crc32(tag + data) & 0xffffffff)


def png_with_filters(img: np.ndarray, ftypes, depth=16) -> bytes:
    "An independent PNG encoder (grey H×W or RGB H×W×3, 8 or 16 bits) applying the filter types `ftypes` cycled over the rows."
    img = img if img.ndim == 3 else img[..., None]
    h, w, c = img.shape
    bpp = depth // 8 * c
    raw = img.astype('>u2' if depth == 16 else np.uint8).reshape(h, -1).view(np.uint8).astype(int)
    out = bytearray()
    for y in range(h):
        t = ftypes[y % len(ftypes)]
        cur, up = raw[y], (raw[y - 1] if y else np.zeros_like(raw[y]))
        left = np.concatenate([np.zeros(bpp, int), cur[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, int), up[:-bpp]])
        if t == 0: f = cur
        elif t == 1: f = cur - left
        elif t == 2: f = cur - up
        elif t == 3: f = cur - (left + up) // 2
        else:
            pred = []
            for a, b, cc in zip(left, up, upleft):
                p = a + b - cc
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                pred.append(a if pa <= pb and pa <= pc else b if pb <= pc else cc)
            f = cur - np.array(pred)
        out += bytes([t]) + bytes((f & 255).astype(np.uint8))
    ihdr = struct.pack('>IIBBBBB', w, h, depth, {1: 0, 3: 2}[c], 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + png_chunk(b'IHDR', ihdr) + png_chunk(b'IDAT', zlib.compress(bytes(out)))
            + png_chunk(b'IEND', b''))


def png16_with_filters(img: np.ndarray, ftypes) -> bytes:
    return png_with_filters(img, ftypes, 16)


def decode_png_reference(data: bytes) -> np.ndarray:
    "An independent PNG decoder in plain Python (non-interlaced 8/16-bit grey or RGB): H×W×C, R G B order."
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    pos, idat, ihdr = 8, b'', None
    while pos < len(data):
        n, tag = struct.unpack('>I4s', data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        assert struct.unpack('>I', data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(tag + body) & 0xffffffff
        if tag == b'IHDR': ihdr = struct.unpack('>IIBBBBB', body)
        if tag == b'IDAT': idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth in (8, 16) and ctype in (0, 2) and not interlace
    c = {0: 1, 2: 3}[ctype]
    bpp = depth // 8 * c
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev, rows = [0] * stride, []
    for y in range(h):
        t, line = raw[y * (stride + 1)], list(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, cc = prev[x], (prev[x - bpp] if x >= bpp else 0)
            p = a + b - cc
            paeth = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - cc) else b if abs(p - b) <= abs(p - cc) else cc
            line[x] = (line[x] + [0, a, b, (a + b) // 2, paeth][t]) & 255
        rows.append(line)
        prev = line
    px = np.array(rows, np.uint8)
    px = px.view('>u2').astype(np.uint16) if depth == 16 else px
    return px.reshape(h, w, c)


def test_runtime_modules_do_not_import_dev_tools():
    code = ("import sys, importlib.abc\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('nbdev', 'fastcore', 'execnb', 'kornia', 'hypothesis'):\n"
            "            raise ImportError(f'runtime code imported {name!r}')\n"
            "sys.meta_path.insert(0, Block())\n"
            "import depthnb.data, depthnb.data.io, depthnb.data.datasets\nprint('ok')")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == 'ok', r.stderr


def test_opencv_is_a_runtime_requirement():
    "The image readers decode with OpenCV, so settings.ini must list it in `requirements`, not only for dev."
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / 'settings.ini')
    runtime = cfg['DEFAULT']['requirements'].split()
    dev = cfg['DEFAULT']['dev_requirements'].split()
    assert any(r.startswith('opencv-python-headless') for r in runtime)
    assert not any(r.startswith('opencv') for r in dev)
    assert any(r.startswith('hypothesis') for r in dev)


def test_reference_png_codec_agrees_with_itself_and_opencv():
    "The test's own encoder and decoder are checked against each other and against OpenCV."
    raw = rng(15).integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    for ftypes in ([0], [1], [2], [3], [4], [4, 3, 2, 1, 0]):
        data = png16_with_filters(raw, ftypes)
        np.testing.assert_array_equal(decode_png_reference(data), raw)
        np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)[..., ::-1], raw)
    ok, buf = cv2.imencode('.png', raw[..., ::-1])  # libpng picks its own filters row by row
    np.testing.assert_array_equal(decode_png_reference(buf.tobytes()), raw)


# ---------------------------------------------------------------- images

def test_read_image_rgb_order_against_pillow(tmp_path):
    a = rng().integers(0, 256, (5, 7, 3), dtype=np.uint8)
    (tmp_path / 'a.png').write_bytes(pil_bytes(a))  # Pillow writes RGB
    img = read_image(tmp_path / 'a.png')
    assert img.dtype == torch.float32 and img.shape == (3, 5, 7) and img.is_contiguous()
    np.testing.assert_array_equal((img.numpy() * 255).round().astype(np.uint8).transpose(1, 2, 0), a)
    rgba = np.concatenate([a, np.full((5, 7, 1), 7, np.uint8)], -1)
    (tmp_path / 'a4.png').write_bytes(pil_bytes(rgba, mode='RGBA'))
    np.testing.assert_array_equal(read_image(tmp_path / 'a4.png'), img)  # alpha dropped


def test_read_image_grey_16bit_and_jpeg(tmp_path):
    g = rng().integers(0, 256, (4, 6), dtype=np.uint8)
    (tmp_path / 'g.png').write_bytes(pil_bytes(g))
    img = read_image(tmp_path / 'g.png')
    assert img.shape == (3, 4, 6)
    for c in range(3): np.testing.assert_allclose(img[c].numpy(), g / 255., atol=1e-6)
    g16 = rng().integers(0, 65536, (4, 6), dtype=np.uint16)
    (tmp_path / 'g16.png').write_bytes(pil_bytes(g16))
    np.testing.assert_allclose(read_image(tmp_path / 'g16.png')[1].numpy(), g16 / 65535., atol=1e-6)
    rgb16 = rng(1).integers(0, 65536, (3, 5, 3)).astype(np.uint16)
    (tmp_path / 'rgb16.png').write_bytes(png16_with_filters(rgb16, [4]))
    np.testing.assert_allclose(read_image(tmp_path / 'rgb16.png').numpy(), rgb16.transpose(2, 0, 1) / 65535., atol=1e-6)
    (tmp_path / 'a.jpg').write_bytes(pil_bytes(np.full((8, 8, 3), 128, np.uint8), 'JPEG'))
    np.testing.assert_allclose(read_image(tmp_path / 'a.jpg').numpy(), 128 / 255., atol=3 / 255)
    (tmp_path / 'g.jpg').write_bytes(pil_bytes(np.full((8, 8), 40, np.uint8), 'JPEG'))
    np.testing.assert_allclose(read_image(tmp_path / 'g.jpg').numpy(), 40 / 255., atol=3 / 255)


def test_read_image_jpeg_colours_against_pillow(tmp_path):
    a = np.zeros((16, 16, 3), np.uint8)
    a[:8] = (200, 30, 40)  # red top half, blue bottom half: a channel swap would show
    a[8:] = (20, 50, 220)
    (tmp_path / 'c.jpg').write_bytes(pil_bytes(a, 'JPEG', quality=95))
    ours = (read_image(tmp_path / 'c.jpg').numpy().transpose(1, 2, 0) * 255).astype(float)
    np.testing.assert_allclose(ours, pil_read(tmp_path / 'c.jpg').astype(float), atol=3)


def test_write_image_round_trip(tmp_path):
    img = torch.rand(3, 6, 9)
    write_image(tmp_path / 'x.png', img)
    np.testing.assert_array_equal(pil_read(tmp_path / 'x.png').transpose(2, 0, 1),
                                  (img.numpy() * 255).round().astype(np.uint8))
    write_image(tmp_path / 'g.png', img[0])
    np.testing.assert_array_equal(pil_read(tmp_path / 'g.png'), (img[0].numpy() * 255).round().astype(np.uint8))
    write_image(tmp_path / 'x.jpg', img)
    assert (tmp_path / 'x.jpg').read_bytes()[:3] == b'\xff\xd8\xff'


def test_write_image_bad_suffix_leaves_nothing(tmp_path):
    (tmp_path / 'x.nope').write_bytes(b'old')
    with pytest.raises(DepthnbInputError, match='nope'):
        write_image(tmp_path / 'x.nope', torch.rand(3, 2, 2))
    assert (tmp_path / 'x.nope').read_bytes() == b'old' and len(list(tmp_path.iterdir())) == 1


def test_non_ascii_paths(tmp_path):
    d = tmp_path / 'données 中文'
    d.mkdir()
    write_image(d / 'é.png', torch.zeros(3, 2, 2))
    assert read_image(d / 'é.png').shape == (3, 2, 2)
    write_kitti_png(d / 'ü.png', np.full((2, 3), 2.5))
    np.testing.assert_array_equal(read_kitti_png(d / 'ü.png')[0], np.full((2, 3), 2.5, np.float32))
    write_kitti_flow(d / 'ø.png', np.ones((2, 3, 2)))
    np.testing.assert_array_equal(read_kitti_flow(d / 'ø.png')[0], np.ones((2, 3, 2), np.float32))
    (d / 'ñ.png').write_bytes(pil_bytes(np.eye(3, dtype=np.uint8)))
    np.testing.assert_array_equal(read_label_png(d / 'ñ.png'), np.eye(3))


def test_read_image_errors_name_the_path(tmp_path):
    raises_with_path(lambda: read_image(tmp_path / 'missing.png'), tmp_path / 'missing.png', 'not found')
    (tmp_path / 'garbage.png').write_bytes(b'this is not an image at all' * 5)
    raises_with_path(lambda: read_image(tmp_path / 'garbage.png'), tmp_path / 'garbage.png', 'not a PNG or JPEG')
    # a truncated PNG: valid signature and header, data cut off
    data = pil_bytes(rng().integers(0, 256, (32, 32, 3), dtype=np.uint8))
    (tmp_path / 'trunc.png').write_bytes(data[:len(data) // 2])
    raises_with_path(lambda: read_image(tmp_path / 'trunc.png'), tmp_path / 'trunc.png', 'damaged PNG')
    (tmp_path / 'empty.png').write_bytes(b'')
    raises_with_path(lambda: read_image(tmp_path / 'empty.png'), tmp_path / 'empty.png')
    raises_with_path(lambda: read_image(tmp_path), tmp_path)
    (tmp_path / 'a.bmp').write_bytes(b'BM' + bytes(60))
    raises_with_path(lambda: read_image(tmp_path / 'a.bmp'), tmp_path / 'a.bmp', 'not a PNG or JPEG')


def png_header_bomb(width, height, depth=16, ctype=2) -> bytes:
    "A PNG whose (CRC-valid) header declares width×height pixels, followed by a few bytes of image data."
    ihdr = struct.pack('>IIBBBBB', width, height, depth, ctype, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + png_chunk(b'IHDR', ihdr) + png_chunk(b'IDAT', zlib.compress(bytes(100)))
            + png_chunk(b'IEND', b''))


def jpeg_header_bomb(width, height) -> bytes:
    "The start of a JPEG whose frame header declares width×height×3 samples."
    sof = b'\xff\xc0' + struct.pack('>HBHHB', 17, 8, height, width, 3) + bytes(9)
    return b'\xff\xd8\xff\xe0' + struct.pack('>H', 16) + b'JFIF\x00' + bytes(9) + sof + b'\xff\xda' + bytes(50)


@pytest.mark.parametrize('reader', [read_image, read_kitti_png, read_kitti_flow, read_label_png])
def test_huge_declared_sizes_are_refused_before_decoding(tmp_path, monkeypatch, reader):
    "A header declaring 10¹² pixels (or just more than the file can hold) never reaches OpenCV's allocator."
    def no_decode(*args): raise AssertionError('cv2.imdecode called on a file whose header cannot be right')
    monkeypatch.setattr(cv2, 'imdecode', no_decode)
    for i, data in enumerate([png_header_bomb(10**6, 10**6), png_header_bomb(2**31 - 1, 2**31 - 1, 1, 0),
                              png_header_bomb(3000, 3000, 8, 0), jpeg_header_bomb(65535, 65535)]):
        if reader is not read_image and data[:2] == b'\xff\xd8': continue
        (tmp_path / f'{i}.png').write_bytes(data)
        raises_with_path(lambda: reader(tmp_path / f'{i}.png'), tmp_path / f'{i}.png',
                         'cannot hold' if data[:2] != b'\xff\xd8' or reader is read_image else None)


def test_png_chunk_longer_than_the_file_is_refused_before_decoding(tmp_path, monkeypatch):
    "Found by the fuzz tests: OpenCV 5 allocates a chunk's declared length (4 GB here) before reading it."
    data = bytearray(png16_with_filters(rng(17).integers(0, 65536, (5, 7, 3)).astype(np.uint16), [1]))
    data[33:37] = struct.pack('>I', 0xFFFFFF00)  # the IDAT chunk's length
    (tmp_path / 'chunk.png').write_bytes(bytes(data))
    def no_decode(*args): raise AssertionError('cv2.imdecode called on a PNG whose chunks do not fit in the file')
    monkeypatch.setattr(cv2, 'imdecode', no_decode)
    for reader in (read_image, read_kitti_png, read_kitti_flow, read_label_png):
        raises_with_path(lambda: reader(tmp_path / 'chunk.png'), tmp_path / 'chunk.png', 'declares 4294967040 bytes')
    (tmp_path / 'noend.png').write_bytes(bytes(data[:33]))  # the chunks fit, but the file ends after IHDR
    raises_with_path(lambda: read_image(tmp_path / 'noend.png'), tmp_path / 'noend.png', 'no IEND')


def test_jpeg_with_too_many_scans_is_refused(tmp_path, monkeypatch):
    data = pil_bytes(np.zeros((8, 8, 3), np.uint8), 'JPEG')
    (tmp_path / 'scans.jpg').write_bytes(data[:-2] + b'\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00' * 300 + data[-2:])
    monkeypatch.setattr(cv2, 'imdecode', lambda *a: pytest.fail('cv2.imdecode called'))
    raises_with_path(lambda: read_image(tmp_path / 'scans.jpg'), tmp_path / 'scans.jpg', 'more than the 256')


def test_jpeg_header_after_long_segments(tmp_path):
    "The frame header is found after long APPn / COM segments (EXIF blocks reach 64 KiB)."
    a = rng(18).integers(0, 256, (6, 10, 3)).astype(np.uint8)
    (tmp_path / 'c.jpg').write_bytes(pil_bytes(a, 'JPEG', comment=b'x' * 60000, quality=100))
    ours = read_image(tmp_path / 'c.jpg').numpy().transpose(1, 2, 0) * 255
    np.testing.assert_allclose(ours, pil_read(tmp_path / 'c.jpg'), atol=3)


def test_size_bound_admits_real_files(tmp_path):
    "The bound is loose enough for the most compressible real files: a blank 16-bit KITTI-sized disparity map."
    write_kitti_png(tmp_path / 'zeros.png', np.zeros((375, 1242)))
    assert len((tmp_path / 'zeros.png').read_bytes()) < 2000  # deflate at its best
    vals, valid = read_kitti_png(tmp_path / 'zeros.png')
    assert vals.shape == (375, 1242) and not valid.any()
    (tmp_path / 'flat.jpg').write_bytes(pil_bytes(np.zeros((2000, 3000, 3), np.uint8), 'JPEG', progressive=True))
    assert read_image(tmp_path / 'flat.jpg').shape == (3, 2000, 3000)


# ---------------------------------------------------------------- PFM

def pfm_bytes(a: np.ndarray, little=True) -> bytes:
    "An independent PFM writer: header, then rows bottom to top."
    h, w = a.shape[:2]
    kind = b'PF' if a.ndim == 3 else b'Pf'
    scale = b'-1.000000' if little else b'1.000000'
    return kind + b'\n' + f'{w} {h}'.encode() + b'\n' + scale + b'\n' + a[::-1].astype('<f4' if little else '>f4').tobytes()


@pytest.mark.parametrize('little', [True, False])
@pytest.mark.parametrize('color', [False, True])
def test_read_pfm_independent_bytes(tmp_path, little, color):
    a = rng(1).normal(size=(5, 4, 3) if color else (5, 4)).astype(np.float32)
    a[1, 2] = np.inf
    (tmp_path / 'a.pfm').write_bytes(pfm_bytes(a, little))
    out = read_pfm(tmp_path / 'a.pfm')
    assert out.dtype == np.float32 and out.shape == a.shape
    np.testing.assert_array_equal(out, a)


def test_write_pfm_exact_bytes_and_round_trip(tmp_path):
    a = rng(2).normal(size=(3, 5)).astype(np.float32)
    a[0, 0] = np.inf
    write_pfm(tmp_path / 'a.pfm', a)
    raw = (tmp_path / 'a.pfm').read_bytes()
    head = b'Pf\n5 3\n-1.0\n'
    assert raw[:len(head)] == head
    body = np.frombuffer(raw[len(head):], '<f4').reshape(3, 5)
    np.testing.assert_array_equal(body[::-1], a)  # bottom row first
    np.testing.assert_array_equal(read_pfm(tmp_path / 'a.pfm'), a)
    c = rng(3).random((2, 3, 3)).astype(np.float32)
    write_pfm(tmp_path / 'c.pfm', torch.from_numpy(c))
    assert (tmp_path / 'c.pfm').read_bytes().startswith(b'PF\n3 2\n')
    np.testing.assert_array_equal(read_pfm(tmp_path / 'c.pfm'), c)


@pytest.mark.parametrize('content,match', [
    (b'P5\n3 2\n-1.0\n' + bytes(24), 'header'),
    (b'Pf\nthree 2\n-1.0\n' + bytes(24), 'header'),
    (b'Pf\n3 2\n0\n' + bytes(24), 'scale'),
    (b'Pf\n3 2\n-1.0\n' + bytes(23), 'bytes'),
    (b'Pf\n3 2\n-1.0\n' + bytes(28), 'bytes'),
    (b'Pf\n1000000 1000000\n-1.0\n' + bytes(28), 'bytes'),
    (b'', 'header'),
])
def test_read_pfm_bad_files(tmp_path, content, match):
    (tmp_path / 'bad.pfm').write_bytes(content)
    raises_with_path(lambda: read_pfm(tmp_path / 'bad.pfm'), tmp_path / 'bad.pfm', match)


def test_read_pfm_missing(tmp_path):
    raises_with_path(lambda: read_pfm(tmp_path / 'none.pfm'), tmp_path / 'none.pfm', 'not found')


# ---------------------------------------------------------------- KITTI 16-bit PNG

def test_kitti_png_values_and_invalid(tmp_path):
    v = np.array([[12.25, 0., 3.], [0.00390625, 255.99609375, 80.5]], np.float32)
    write_kitti_png(tmp_path / 'd.png', v)
    raw = pil_read(tmp_path / 'd.png')
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, (v * 256).round().astype(np.uint16))
    vals, valid = read_kitti_png(tmp_path / 'd.png')
    assert vals[0, 0] == 12.25 and not valid[0, 1] and vals[0, 1] == 0
    np.testing.assert_array_equal(vals, v)
    np.testing.assert_array_equal(valid, v > 0)


@pytest.mark.parametrize('writer', ['pillow', 'filters'])
def test_kitti_png_written_independently(tmp_path, writer):
    raw = rng(4).integers(0, 65536, (6, 9)).astype(np.uint16)
    raw[2, 3] = 0
    data = pil_bytes(raw) if writer == 'pillow' else png_with_filters(raw, [0, 1, 2, 3, 4])
    (tmp_path / 'o.png').write_bytes(data)
    vals, valid = read_kitti_png(tmp_path / 'o.png')
    np.testing.assert_array_equal(vals, raw / 256.)
    np.testing.assert_array_equal(valid, raw > 0)


def test_kitti_depth_convention(tmp_path):
    "KITTI's depth benchmark: depth (m) = png / 256, 0 = no measurement; an 80 m point is 20480."
    raw = np.array([[20480, 0], [1, 65535]], np.uint16)
    (tmp_path / 'depth.png').write_bytes(pil_bytes(raw))
    depth, valid = read_kitti_png(tmp_path / 'depth.png')
    np.testing.assert_array_equal(depth, [[80., 0.], [1 / 256, 65535 / 256]])
    np.testing.assert_array_equal(valid, [[True, False], [True, True]])


def test_kitti_png_valid_mask_and_range(tmp_path):
    v = np.array([[1., 2.], [3., 4.]])
    write_kitti_png(tmp_path / 'm.png', v, valid=np.array([[True, False], [True, True]]))
    vals, valid = read_kitti_png(tmp_path / 'm.png')
    assert not valid[0, 1] and vals[0, 1] == 0 and vals[1, 1] == 4
    with pytest.raises(DepthnbInputError, match='cannot be stored'):
        write_kitti_png(tmp_path / 'x.png', np.array([[256.]]))
    with pytest.raises(DepthnbInputError, match='cannot be stored'):
        write_kitti_png(tmp_path / 'x.png', np.array([[0.001]]))
    with pytest.raises(DepthnbInputError, match='cannot be stored'):
        write_kitti_png(tmp_path / 'x.png', np.array([[np.nan]]), valid=np.array([[True]]))
    assert not (tmp_path / 'x.png').exists()


def test_kitti_png_errors(tmp_path):
    (tmp_path / 'rgb.png').write_bytes(pil_bytes(np.zeros((3, 3, 3), np.uint8)))
    raises_with_path(lambda: read_kitti_png(tmp_path / 'rgb.png'), tmp_path / 'rgb.png', '16-bit')
    (tmp_path / 'g8.png').write_bytes(pil_bytes(np.zeros((3, 3), np.uint8)))
    raises_with_path(lambda: read_kitti_png(tmp_path / 'g8.png'), tmp_path / 'g8.png', '16-bit')
    (tmp_path / 'corrupt.png').write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(range(256)))
    raises_with_path(lambda: read_kitti_png(tmp_path / 'corrupt.png'), tmp_path / 'corrupt.png')
    (tmp_path / 'j.png').write_bytes(pil_bytes(np.zeros((3, 3), np.uint8), 'JPEG'))
    raises_with_path(lambda: read_kitti_png(tmp_path / 'j.png'), tmp_path / 'j.png', 'not a PNG')
    raises_with_path(lambda: read_kitti_png(tmp_path / 'no.png'), tmp_path / 'no.png', 'not found')


# ---------------------------------------------------------------- KITTI flow PNG

def test_kitti_flow_written_independently(tmp_path):
    h, w = 5, 8
    u, v = rng(5).uniform(-500, 500, (2, h, w))
    valid = rng(6).random((h, w)) > 0.3
    R = np.round(u * 64 + 2**15).astype(np.uint16)
    G = np.round(v * 64 + 2**15).astype(np.uint16)
    B = valid.astype(np.uint16)
    (tmp_path / 'f.png').write_bytes(png16_with_filters(np.stack([R, G, B], -1), [0, 1, 2, 3, 4]))
    flow, ok = read_kitti_flow(tmp_path / 'f.png')
    assert flow.shape == (h, w, 2) and flow.dtype == np.float32
    np.testing.assert_array_equal(ok, valid)
    np.testing.assert_array_equal(flow[..., 0][valid], ((R.astype(float) - 2**15) / 64)[valid])
    np.testing.assert_array_equal(flow[..., 1][valid], ((G.astype(float) - 2**15) / 64)[valid])
    assert (flow[~valid] == 0).all()


def test_kitti_flow_write_read_by_reference_decoder(tmp_path):
    flow = rng(7).uniform(-100, 100, (4, 6, 2)).astype(np.float32)
    flow = np.round(flow * 64) / 64  # representable exactly
    flow[1, 1] = (-512, 511.984375)  # the extremes: 0 and 65535
    valid = np.ones((4, 6), bool)
    valid[0, :2] = False
    write_kitti_flow(tmp_path / 'f.png', flow, valid)
    rgb = decode_png_reference((tmp_path / 'f.png').read_bytes())  # R, G, B = u, v, valid
    assert rgb.dtype == np.uint16 and rgb.shape == (4, 6, 3)
    np.testing.assert_array_equal(rgb[..., 2], valid.astype(np.uint16))
    np.testing.assert_array_equal(rgb[..., 0][valid], (flow[..., 0] * 64 + 2**15)[valid].astype(np.uint16))
    np.testing.assert_array_equal(rgb[..., 1][valid], (flow[..., 1] * 64 + 2**15)[valid].astype(np.uint16))
    np.testing.assert_array_equal(rgb[1, 1, :2], [0, 65535])
    np.testing.assert_array_equal(rgb[0, 0, :2], [2**15, 2**15])  # invalid pixels store flow 0
    f2, v2 = read_kitti_flow(tmp_path / 'f.png')
    np.testing.assert_array_equal(v2, valid)
    np.testing.assert_array_equal(f2[valid], flow[valid])


def test_kitti_flow_errors(tmp_path):
    (tmp_path / 'grey16.png').write_bytes(pil_bytes(np.zeros((3, 3), np.uint16)))
    raises_with_path(lambda: read_kitti_flow(tmp_path / 'grey16.png'), tmp_path / 'grey16.png', '3-channel')
    (tmp_path / 'rgb8.png').write_bytes(pil_bytes(np.zeros((3, 3, 3), np.uint8)))
    raises_with_path(lambda: read_kitti_flow(tmp_path / 'rgb8.png'), tmp_path / 'rgb8.png', '16-bit')
    (tmp_path / 'junk.png').write_bytes(b'junk' * 40)
    raises_with_path(lambda: read_kitti_flow(tmp_path / 'junk.png'), tmp_path / 'junk.png')
    with pytest.raises(DepthnbInputError, match='512'):
        write_kitti_flow(tmp_path / 'big.png', np.full((2, 2, 2), 600.))
    with pytest.raises(DepthnbInputError, match='finite'):
        write_kitti_flow(tmp_path / 'nan.png', np.full((2, 2, 2), np.nan), np.ones((2, 2), bool))


@pytest.mark.parametrize('ftypes', [[0], [1], [2], [3], [4], [4, 3, 2, 1, 0, 3]])
def test_kitti_flow_every_png_filter(tmp_path, ftypes):
    raw = rng(12).integers(0, 65536, (9, 13, 3)).astype(np.uint16)
    raw[..., 2] = rng(13).integers(0, 2, (9, 13))
    (tmp_path / 'f.png').write_bytes(png16_with_filters(raw, ftypes))
    flow, valid = read_kitti_flow(tmp_path / 'f.png')
    np.testing.assert_array_equal(valid, raw[..., 2] > 0)
    np.testing.assert_array_equal(flow[valid], (raw[..., :2][valid].astype(float) - 2**15) / 64)


def test_kitti_flow_corrupt_png(tmp_path):
    raw = rng(14).integers(0, 65536, (4, 5, 3)).astype(np.uint16)
    data = bytearray(png16_with_filters(raw, [1]))
    data[40] ^= 0xFF  # inside the IDAT chunk: CRC mismatch
    (tmp_path / 'crc.png').write_bytes(bytes(data))
    raises_with_path(lambda: read_kitti_flow(tmp_path / 'crc.png'), tmp_path / 'crc.png', 'damaged PNG')
    (tmp_path / 'cut.png').write_bytes(bytes(data[:30]))
    raises_with_path(lambda: read_kitti_flow(tmp_path / 'cut.png'), tmp_path / 'cut.png')
    (tmp_path / 'head.png').write_bytes(bytes(data[:20]))
    raises_with_path(lambda: read_kitti_flow(tmp_path / 'head.png'), tmp_path / 'head.png', 'IHDR')


# ---------------------------------------------------------------- .flo

def test_flo_bytes_both_ways(tmp_path):
    flow = rng(8).normal(size=(3, 4, 2)).astype(np.float32)
    (tmp_path / 'a.flo').write_bytes(struct.pack('<fii', 202021.25, 4, 3) + flow.astype('<f4').tobytes())
    np.testing.assert_array_equal(read_flo(tmp_path / 'a.flo'), flow)
    write_flo(tmp_path / 'b.flo', flow)
    raw = (tmp_path / 'b.flo').read_bytes()
    assert raw[:4] == b'PIEH' and struct.unpack('<ii', raw[4:12]) == (4, 3)
    np.testing.assert_array_equal(np.frombuffer(raw[12:], '<f4').reshape(3, 4, 2), flow)


def test_flo_errors(tmp_path):
    (tmp_path / 'm.flo').write_bytes(struct.pack('<fii', 1.0, 2, 2) + bytes(32))
    raises_with_path(lambda: read_flo(tmp_path / 'm.flo'), tmp_path / 'm.flo', 'magic')
    (tmp_path / 't.flo').write_bytes(struct.pack('<fii', 202021.25, 2, 2) + bytes(30))
    raises_with_path(lambda: read_flo(tmp_path / 't.flo'), tmp_path / 't.flo', 'bytes')
    (tmp_path / 's.flo').write_bytes(b'PIE')
    raises_with_path(lambda: read_flo(tmp_path / 's.flo'), tmp_path / 's.flo')
    # a header declaring 2³¹−1 × 2³¹−1 pixels: refused from the file size, nothing is allocated
    (tmp_path / 'h.flo').write_bytes(struct.pack('<fii', 202021.25, 2**31 - 1, 2**31 - 1) + bytes(32))
    raises_with_path(lambda: read_flo(tmp_path / 'h.flo'), tmp_path / 'h.flo', 'found 32')
    (tmp_path / 'n.flo').write_bytes(struct.pack('<fii', 202021.25, -2, 2) + bytes(32))
    raises_with_path(lambda: read_flo(tmp_path / 'n.flo'), tmp_path / 'n.flo', 'bad size')


# ---------------------------------------------------------------- KITTI calibration

CAM_TO_CAM = """calib_time: 09-Jan-2012 13:57:47
corner_dist: 9.950000e-02
S_00: 1.392000e+03 5.120000e+02
R_rect_00: 9.999239e-01 9.837760e-03 -7.445048e-03 -9.869795e-03 9.999421e-01 -4.278459e-03 7.402527e-03 4.351614e-03 9.999631e-01
P_rect_00: 7.215377e+02 0.000000e+00 6.095593e+02 0.000000e+00 0.000000e+00 7.215377e+02 1.728540e+02 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00
S_rect_02: 1.242000e+03 3.750000e+02
P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03
S_rect_03: 1.242000e+03 3.750000e+02
P_rect_03: 7.215377e+02 0.000000e+00 6.095593e+02 -3.395242e+02 0.000000e+00 7.215377e+02 1.728540e+02 2.199936e+00 0.000000e+00 0.000000e+00 1.000000e+00 2.729905e-03
"""
VELO_TO_CAM = """calib_time: 15-Mar-2012 11:37:16
R: 7.533745e-03 -9.999714e-01 -6.166020e-04 1.480249e-02 7.280733e-04 -9.998902e-01 9.998621e-01 7.523790e-03 1.480755e-02
T: -4.069766e-03 -7.631618e-02 -2.717806e-01
delta_f: 0.000000e+00 0.000000e+00
delta_c: 0.000000e+00 0.000000e+00
"""


def test_read_calib_file_kitti_text(tmp_path):
    (tmp_path / 'c.txt').write_text(CAM_TO_CAM)
    c = read_calib_file(tmp_path / 'c.txt')
    assert 'calib_time' not in c and c['corner_dist'].tolist() == [0.0995]
    assert c['P_rect_02'].shape == (12,) and c['P_rect_02'][3] == 44.85728
    cal = kitti_stereo_calib(tmp_path / 'c.txt')
    np.testing.assert_allclose(cal['K'], [[721.5377, 0, 609.5593], [0, 721.5377, 172.854], [0, 0, 1]])
    np.testing.assert_allclose(cal['baseline'], (44.85728 + 339.5242) / 721.5377)
    assert 0.53 < cal['baseline'] < 0.54 and cal['image_size'] == (375, 1242)


def test_kitti_stereo_calib_velo(tmp_path):
    (tmp_path / 'c.txt').write_text(CAM_TO_CAM); (tmp_path / 'v.txt').write_text(VELO_TO_CAM)
    cal = kitti_stereo_calib(tmp_path / 'c.txt', tmp_path / 'v.txt', cam=3)
    c, v = read_calib_file(tmp_path / 'c.txt'), read_calib_file(tmp_path / 'v.txt')
    T = np.vstack([np.hstack([v['R'].reshape(3, 3), v['T'][:, None]]), [0, 0, 0, 1]])
    R = np.eye(4); R[:3, :3] = c['R_rect_00'].reshape(3, 3)
    np.testing.assert_allclose(cal['P_velo_to_image'], c['P_rect_03'].reshape(3, 4) @ R @ T)
    np.testing.assert_allclose(cal['T_velo_to_cam'], T)


def test_calib_errors(tmp_path):
    raises_with_path(lambda: read_calib_file(tmp_path / 'none.txt'), tmp_path / 'none.txt', 'not found')
    (tmp_path / 'empty.txt').write_text('calib_time: yesterday\n')
    raises_with_path(lambda: read_calib_file(tmp_path / 'empty.txt'), tmp_path / 'empty.txt')
    (tmp_path / 'c.txt').write_text('P_rect_02: 1 2 3\n')
    with pytest.raises(DepthnbInputError, match='P_rect_02'):
        kitti_stereo_calib(tmp_path / 'c.txt')
    with pytest.raises(DepthnbInputError, match='cam'):
        kitti_stereo_calib(read_calib_file(tmp_path / 'c.txt'), cam=5)


@pytest.mark.parametrize('line,match', [
    ('S_rect_02: nan 375', 'S_rect_02'),
    ('S_rect_02: 1e12 1e12', 'S_rect_02'),
    ('S_rect_02: 0 375', 'S_rect_02'),
    ('P_rect_02: 0 0 609.5 44.8 0 721.5 172.8 0.2 0 0 1 0.003', 'focal length 0'),
    ('P_rect_03: 721.5 0 609.5 inf 0 721.5 172.8 2.2 0 0 1 0.003', 'P_rect_03'),
])
def test_kitti_calib_damaged_values(tmp_path, line, match):
    "A calibration file whose numbers are damaged gives a DepthnbInputError, not a NaN baseline or a huge image."
    key = line.split(':')[0]
    text = '\n'.join(line if l.startswith(key + ':') else l for l in CAM_TO_CAM.splitlines())
    (tmp_path / 'c.txt').write_text(text)
    with pytest.raises(DepthnbInputError, match=match):
        kitti_stereo_calib(tmp_path / 'c.txt')


def test_write_calib_file_round_trip(tmp_path):
    d = dict(calib_time='09-Jan-2012 13:57:47', P_rect_02=rng(9).normal(size=12), S_rect_02=np.array([40., 16.]))
    write_calib_file(tmp_path / 'w.txt', d)
    lines = (tmp_path / 'w.txt').read_text().splitlines()
    assert lines[0] == 'calib_time: 09-Jan-2012 13:57:47' and lines[1].startswith('P_rect_02: ')
    c = read_calib_file(tmp_path / 'w.txt')
    np.testing.assert_allclose(c['P_rect_02'], d['P_rect_02'], rtol=1e-11)


# ---------------------------------------------------------------- velodyne

def generate_depth_map_reference(P_velo2im, velo, im_shape, vel_depth):
    "monodepth2's generate_depth_map, step by step with plain loops (duplicates by true pixel index)."
    velo = velo[velo[:, 0] >= 0, :]
    hom = np.concatenate([velo[:, :3], np.ones((len(velo), 1))], 1)
    depth = np.zeros(im_shape)
    hits = defaultdict(list)
    for p, v in zip(hom @ P_velo2im.T, velo):
        u, w = p[0] / p[2], p[1] / p[2]
        z = v[0] if vel_depth else p[2]
        x, y = np.round(u) - 1, np.round(w) - 1
        if x >= 0 and y >= 0 and x < im_shape[1] and y < im_shape[0]:
            hits[int(y), int(x)].append(z)
    for (y, x), zs in hits.items():
        depth[y, x] = min(zs)
    depth[depth < 0] = 0
    return depth


@pytest.mark.parametrize('vel_depth', [False, True])
def test_velodyne_to_depth_matches_reference(tmp_path, vel_depth):
    (tmp_path / 'calib_cam_to_cam.txt').write_text(CAM_TO_CAM); (tmp_path / 'calib_velo_to_cam.txt').write_text(VELO_TO_CAM)
    cal = kitti_stereo_calib(tmp_path / 'calib_cam_to_cam.txt', tmp_path / 'calib_velo_to_cam.txt')
    r = rng(10)
    n = 4000
    pts = np.stack([r.uniform(-5, 60, n), r.uniform(-20, 20, n), r.uniform(-2.5, 1.5, n), r.random(n)], 1)
    # 500 more points on the rays of 500 of them (same pixel), at 0.3–1.5× their depth
    M = np.vstack([cal['P_velo_to_image'], [0, 0, 0, 1]])
    q = np.hstack([pts[:500, :3], np.ones((500, 1))]) @ M.T
    q[:, :3] *= r.uniform(0.3, 1.5, (500, 1))
    more = (q @ np.linalg.inv(M).T)[:, :3]
    pts = np.vstack([pts, np.hstack([more, r.random((500, 1))])]).astype(np.float32)
    write_velodyne(tmp_path / 's.bin', pts)
    assert (np.fromfile(tmp_path / 's.bin', '<f4').reshape(-1, 4) == pts).all()  # the raw layout
    scan = read_velodyne(tmp_path / 's.bin')
    shape = (375, 1242)
    depth = velodyne_to_depth(scan, tmp_path, shape, vel_depth=vel_depth)
    ref = generate_depth_map_reference(cal['P_velo_to_image'], scan.astype(np.float64), shape, vel_depth)
    assert depth.dtype == np.float32 and depth.shape == shape
    assert (depth > 0).sum() > 500
    np.testing.assert_allclose(depth, ref, rtol=1e-6)


def test_velodyne_known_points(tmp_path):
    K = np.array([[30., 0, 19.5], [0, 30, 7.5], [0, 0, 1]])
    R_vc = np.array([[0., -1, 0], [0, 0, -1], [1, 0, 0]])
    t = np.array([0.1, -0.2, 0.3])  # velodyne → camera translation
    cc = dict(R_rect_00=np.eye(3), P_rect_02=np.hstack([K, np.zeros((3, 1))]), P_rect_03=np.hstack([K, [[-15.], [0], [0]]]))
    vc = dict(R=R_vc, T=t)

    def velo_point(col, row, z):  # a velodyne point seen at 0-based pixel (col, row) at camera depth z
        cam = z * np.linalg.inv(K) @ np.array([col + 1, row + 1, 1.])  # monodepth2: pixel = round(u) − 1
        return R_vc.T @ (cam - t)
    pts = np.array([velo_point(3, 2, 9.), velo_point(3, 2, 4.), velo_point(3, 2, 6.),  # three on one pixel
                    velo_point(39, 15, 20.), velo_point(0, 0, 2.5),                   # image corners
                    velo_point(40, 3, 5.), velo_point(-1, 3, 5.)])                      # just outside
    behind = velo_point(10, 5, 5.); behind[0] = -0.5                                    # x < 0: dropped
    depth = velodyne_to_depth(np.vstack([pts, behind]), (cc, vc), (16, 40))
    expected = np.zeros((16, 40), np.float32)
    expected[2, 3], expected[15, 39], expected[0, 0] = 4., 20., 2.5
    np.testing.assert_allclose(depth, expected, atol=1e-5)
    # vel_depth: the velodyne x instead of the camera depth
    d2 = velodyne_to_depth(pts[:1], (cc, vc), (16, 40), vel_depth=True)
    np.testing.assert_allclose(d2[2, 3], pts[0, 0], rtol=1e-6)


def test_velodyne_errors(tmp_path):
    (tmp_path / 'bad.bin').write_bytes(bytes(20))  # 5 floats
    raises_with_path(lambda: read_velodyne(tmp_path / 'bad.bin'), tmp_path / 'bad.bin', 'multiple of 4')
    raises_with_path(lambda: read_velodyne(tmp_path / 'no.bin'), tmp_path / 'no.bin', 'not found')
    raises_with_path(lambda: velodyne_to_depth(np.zeros((1, 4)), tmp_path, (4, 4)), tmp_path / 'calib_cam_to_cam.txt')
    write_velodyne(tmp_path / 'e.bin', np.zeros((0, 4)))
    assert read_velodyne(tmp_path / 'e.bin').shape == (0, 4)
    cc = dict(R_rect_00=np.eye(3), P_rect_02=np.hstack([np.eye(3), np.zeros((3, 1))]),
              P_rect_03=np.hstack([np.eye(3), [[-1.], [0], [0]]]))
    vc = dict(R=np.eye(3), T=np.zeros(3))
    for shape in [(10**6, 10**6), (0, 4), (4,), ('a', 4)]:
        with pytest.raises(DepthnbInputError, match='im_shape'):
            velodyne_to_depth(np.zeros((1, 4)), (cc, vc), shape)


def test_velodyne_non_finite_points_are_dropped(tmp_path):
    "A damaged scan (NaN, signalling NaN, inf, 1e38) gives no depth there, and no warning."
    import warnings
    K = np.array([[10., 0, 1.5], [0, 10, 1.5], [0, 0, 1]])
    cc = dict(R_rect_00=np.eye(3), P_rect_02=np.hstack([K, np.zeros((3, 1))]), P_rect_03=np.hstack([K, [[-1.], [0], [0]]]))
    vc = dict(R=np.array([[0., -1, 0], [0, 0, -1], [1, 0, 0]]), T=np.zeros(3))
    snan = np.frombuffer(struct.pack('<I', 0x7FA00000), '<f4')[0]
    bad = np.array([[np.nan, 0, 0, 1], [snan, 0, 0, 1], [np.inf, 0, 0, 1], [1e38, 0, 0, 1], [5, np.inf, 0, 1]], np.float32)
    good = np.array([[5., 0, 0, 1]], np.float32)  # on the optical axis: pixel (round(1.5) − 1, …) = (1, 1)
    write_velodyne(tmp_path / 's.bin', np.vstack([bad, good]))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        depth = velodyne_to_depth(read_velodyne(tmp_path / 's.bin'), (cc, vc), (4, 4))
    expected = np.zeros((4, 4), np.float32)
    expected[1, 1] = 5.
    np.testing.assert_array_equal(depth, expected)


# ---------------------------------------------------------------- Middlebury / ETH3D calib

def test_middlebury_and_eth3d_calib(tmp_path):
    (tmp_path / 'mb.txt').write_text('cam0=[1758.23 0 953.34; 0 1758.23 552.29; 0 0 1]\n'
                                     'cam1=[1758.23 0 953.34; 0 1758.23 552.29; 0 0 1]\ndoffs=0\nbaseline=111.53\n'
                                     'width=1920\nheight=1080\nndisp=290\nisint=0\nvmin=75\nvmax=262\ndyavg=0\ndymax=0\n')
    c = read_middlebury_calib(tmp_path / 'mb.txt')
    np.testing.assert_allclose(c['cam0'], [[1758.23, 0, 953.34], [0, 1758.23, 552.29], [0, 0, 1]])
    assert c['width'] == 1920 and isinstance(c['width'], int) and c['doffs'] == 0 and c['vmin'] == 75.
    assert c['baseline_m'] == pytest.approx(0.11153)
    (tmp_path / 'eth.txt').write_text('cam0=[541.764 0 553.869; 0 541.764 232.396; 0 0 1]\n'
                                      'cam1=[541.764 0 553.869; 0 541.764 232.396; 0 0 1]\n'
                                      'doffs=0\nbaseline=59.8905\nwidth=942\nheight=489\nndisp=64\nisint=0\n'
                                      'vmin=0\nvmax=0\ndyavg=0\ndymax=0\n')
    e = read_middlebury_calib(tmp_path / 'eth.txt')
    assert e['height'] == 489 and e['baseline'] == 59.8905
    write_middlebury_calib(tmp_path / 'w.txt', e)
    assert (tmp_path / 'w.txt').read_text().splitlines()[0] == 'cam0=[541.764 0 553.869; 0 541.764 232.396; 0 0 1]'
    assert read_middlebury_calib(tmp_path / 'w.txt').keys() == e.keys()


def test_middlebury_calib_errors(tmp_path):
    raises_with_path(lambda: read_middlebury_calib(tmp_path / 'no.txt'), tmp_path / 'no.txt', 'not found')
    (tmp_path / 'a.txt').write_text('cam0=[1 0 0; 0 1 x; 0 0 1]\n')
    raises_with_path(lambda: read_middlebury_calib(tmp_path / 'a.txt'), tmp_path / 'a.txt', 'matrix')
    (tmp_path / 'b.txt').write_text('just some words\n')
    raises_with_path(lambda: read_middlebury_calib(tmp_path / 'b.txt'), tmp_path / 'b.txt', 'key=value')
    (tmp_path / 'c.txt').write_text('cam0=camera\n')
    raises_with_path(lambda: read_middlebury_calib(tmp_path / 'c.txt'), tmp_path / 'c.txt', 'cam0 must be a 3×3')
    (tmp_path / 'd.txt').write_text('baseline=193 mm\n')
    raises_with_path(lambda: read_middlebury_calib(tmp_path / 'd.txt'), tmp_path / 'd.txt', 'baseline is not a number')


def test_middlebury_calib_non_finite_numbers(tmp_path):
    "`width=inf` used to crash in int(inf) (OverflowError); non-whole or non-finite values stay floats."
    (tmp_path / 'a.txt').write_text('width=inf\nheight=nan\nndisp=12.5\nisint=1\n')
    c = read_middlebury_calib(tmp_path / 'a.txt')
    assert c['width'] == np.inf and np.isnan(c['height']) and c['ndisp'] == 12.5
    assert c['isint'] == 1 and isinstance(c['isint'], int)


# ---------------------------------------------------------------- Cityscapes

# (name, id, trainId) as in cityscapesScripts' labels.py
CITYSCAPES_LABELS = [
    ('unlabeled', 0, 255), ('ego vehicle', 1, 255), ('rectification border', 2, 255), ('out of roi', 3, 255),
    ('static', 4, 255), ('dynamic', 5, 255), ('ground', 6, 255), ('road', 7, 0), ('sidewalk', 8, 1),
    ('parking', 9, 255), ('rail track', 10, 255), ('building', 11, 2), ('wall', 12, 3), ('fence', 13, 4),
    ('guard rail', 14, 255), ('bridge', 15, 255), ('tunnel', 16, 255), ('pole', 17, 5), ('polegroup', 18, 255),
    ('traffic light', 19, 6), ('traffic sign', 20, 7), ('vegetation', 21, 8), ('terrain', 22, 9), ('sky', 23, 10),
    ('person', 24, 11), ('rider', 25, 12), ('car', 26, 13), ('truck', 27, 14), ('bus', 28, 15),
    ('caravan', 29, 255), ('trailer', 30, 255), ('train', 31, 16), ('motorcycle', 32, 17), ('bicycle', 33, 18)]


def test_cityscapes_table(tmp_path):
    ids = np.array([i for _, i, _ in CITYSCAPES_LABELS] + [34, 200, 255])
    expected = np.array([t for _, _, t in CITYSCAPES_LABELS] + [255, 255, 255])
    np.testing.assert_array_equal(cityscapes_labelid_to_trainid(ids), expected)
    np.testing.assert_array_equal(cityscapes_labelid_to_trainid(torch.from_numpy(ids).to(torch.uint8)).numpy(), expected)
    names = {t: n for n, _, t in CITYSCAPES_LABELS if t != 255}
    assert list(CITYSCAPES_TRAIN_CLASSES) == [names[i] for i in range(19)]
    lab = rng(11).integers(0, 34, (6, 8)).astype(np.uint8)
    (tmp_path / 'x_gtFine_labelIds.png').write_bytes(pil_bytes(lab))
    np.testing.assert_array_equal(read_label_png(tmp_path / 'x_gtFine_labelIds.png'), lab)
    with pytest.raises(DepthnbInputError):
        cityscapes_labelid_to_trainid(np.array([1.5]))


def test_read_label_png_errors(tmp_path):
    (tmp_path / 'rgb.png').write_bytes(pil_bytes(np.zeros((3, 3, 3), np.uint8)))
    raises_with_path(lambda: read_label_png(tmp_path / 'rgb.png'), tmp_path / 'rgb.png', 'single-channel')
    ids = np.arange(12, dtype=np.uint8).reshape(3, 4)
    palette = Image.fromarray(ids).convert('P')
    buf = io.BytesIO()
    palette.save(buf, format='PNG')
    (tmp_path / 'pal.png').write_bytes(buf.getvalue())
    raises_with_path(lambda: read_label_png(tmp_path / 'pal.png'), tmp_path / 'pal.png', 'palette')
    (tmp_path / 'bits.png').write_bytes(pil_bytes(ids > 5))
    raises_with_path(lambda: read_label_png(tmp_path / 'bits.png'), tmp_path / 'bits.png', '1 bits')
    (tmp_path / 'junk.png').write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(40))
    raises_with_path(lambda: read_label_png(tmp_path / 'junk.png'), tmp_path / 'junk.png', 'IHDR')


def test_read_label_png_16bit(tmp_path):
    ids = rng(16).integers(0, 65536, (4, 5)).astype(np.uint16)
    (tmp_path / 'l16.png').write_bytes(pil_bytes(ids))
    out = read_label_png(tmp_path / 'l16.png')
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, ids)
    raises_with_path(lambda: read_label_png(tmp_path / 'no.png'), tmp_path / 'no.png')
