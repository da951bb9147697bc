"""Fuzzed readers: every file reader of depthnb only ever raises `DepthnbInputError` (or a subclass).

Each reader gets random bytes and damaged copies of valid files of its format (bit flips, bytes set at random,
truncation at a random offset, inserted, deleted and repeated bytes, header fields overwritten with huge or
zero sizes, and for PNG the chunk CRCs recomputed afterwards so that the damage reaches the decoder; for the
text formats tokens replaced by `nan`, `1e400`, YAML anchors, brackets, …). Whatever comes out must be a
result or a `DepthnbInputError` (naming the file, for the readers of `depthnb.data.io`): no other exception,
no NumPy `RuntimeWarning` (overflow, invalid casts), no hang (a per-example alarm), no allocation beyond what
the file can hold (the readers check declared sizes
against the file size; `test_data_io.py` checks that OpenCV is never called on such a header).

The runs are reproducible (`derandomize=True`, no example database) and bounded: `FUZZ_EXAMPLES` examples per
reader (300 by default; the environment variable `DEPTHNB_FUZZ_EXAMPLES` changes it).
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import struct
import tempfile
import warnings
import zlib
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from depthnb.core import DepthnbInputError
from depthnb.data import io as dio
from depthnb.engine import load_checkpoint, load_config, save_checkpoint
from test_data_io import CAM_TO_CAM, VELO_TO_CAM, pil_bytes  # the valid KITTI calibration texts, a Pillow writer

FUZZ_EXAMPLES = int(os.environ.get('DEPTHNB_FUZZ_EXAMPLES', '300'))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=timedelta(seconds=2), derandomize=True, database=None)
HANG_S = 10  # an example running longer than this is a hang
MAX_RSS_GROWTH = 1 << 30  # bytes: the peak RSS of the process may not grow by more while fuzzing one reader

WORK = Path(tempfile.mkdtemp(prefix='depthnb-fuzz-'))
set_hypothesis_home_dir(WORK / 'hypothesis')  # Hypothesis's caches go there, not into the repository


# ---------------------------------------------------------------- valid seed files of every format

MIDDLEBURY = """cam0=[1758.23 0 953.34; 0 1758.23 552.29; 0 0 1]
cam1=[1758.23 0 953.34; 0 1758.23 552.29; 0 0 1]
doffs=0
baseline=111.53
width=1920
height=1080
ndisp=290
isint=0
vmin=75
vmax=262
"""
CONFIG = """batch_size: 2
seed: 3
amp: 'off'
stages:
- name: warmup
  steps: 10
  lr: 0.001
  betas: [0.9, 0.99]
  data: [train]
data:
  train:
    type: SyntheticStereo
    args: {size: [32, 64], n: 8}
method_args: {max_disp: 16}
"""


def _file_bytes(write, *args, name='seed') -> bytes:
    "The bytes that a depthnb writer (`write(path, *args)`) puts in a file."
    p = WORK / name
    write(p, *args)
    return p.read_bytes()


def _checkpoint() -> bytes:
    p = WORK / 'seed.pt'
    save_checkpoint(p, dict(method='supervised', step=3, model={'conv.weight': torch.arange(6.).reshape(2, 3)},
                            config={'method': 'supervised', 'batch_size': 2}))
    return p.read_bytes()


_r = np.random.default_rng(0)
SEEDS = {
    'pfm': [_file_bytes(dio.write_pfm, _r.normal(size=(3, 4)).astype(np.float32)),
            _file_bytes(dio.write_pfm, _r.random((2, 3, 3)).astype(np.float32)),
            b'Pf\n3 2\n1.0\n' + struct.pack('>6f', 4, 5, 6, 1, 2, np.inf)],
    'kitti_png': [_file_bytes(dio.write_kitti_png, _r.uniform(0, 200, (5, 7))),
                  pil_bytes(_r.integers(0, 65536, (4, 6)).astype(np.uint16))],
    'kitti_flow': [_file_bytes(dio.write_kitti_flow, _r.uniform(-50, 50, (4, 5, 2)))],
    'flo': [_file_bytes(dio.write_flo, _r.normal(size=(3, 4, 2)))],
    'cam_to_cam': [CAM_TO_CAM.encode()],
    'velo_to_cam': [VELO_TO_CAM.encode()],
    'middlebury_calib': [MIDDLEBURY.encode()],
    'label_png': [pil_bytes(_r.integers(0, 34, (5, 6)).astype(np.uint8)),
                  pil_bytes(_r.integers(0, 65536, (3, 4)).astype(np.uint16))],
    'image': [_file_bytes(dio.write_image, torch.rand(3, 5, 6), name='seed.png'),
              _file_bytes(dio.write_image, torch.rand(4, 5), name='seed_grey.png'),
              pil_bytes(_r.integers(0, 256, (8, 8, 3)).astype(np.uint8), 'JPEG')],
    'velodyne': [_file_bytes(dio.write_velodyne, _r.normal(size=(6, 4)))],
    'config': [CONFIG.encode()],
    'checkpoint': [_checkpoint()],
}


# ---------------------------------------------------------------- damage

HUGE = (0, 1, 255, 65535, 65536, 10**6, 2**31 - 1, 2**31, 2**32 - 1)
EVIL_TOKENS = ('nan', 'inf', '-inf', '1e400', '-1e400', '-0', '9' * 400, '0x10', '1_0', '', ':', '=', '[', ']', ';',
               '[1 2; 3]', '{', '}', '- ', '&a', '*a', '<<: *a', '!!python/object:os.system', '!!binary', '|', '>',
               "'", '"', '#', '%YAML 1.1', '---', '...', '\t', '\x00', 'é', '\u2028', 'null', '~', 'true', '[[[[[[[[')


def _fix_png_crcs(data: bytearray) -> bytearray:
    "Recompute the CRC of every complete PNG chunk, so that damage inside a chunk reaches the decoder."
    pos = 8
    while pos + 12 <= len(data):
        n = struct.unpack('>I', data[pos:pos + 4])[0]
        if pos + 12 + n > len(data):
            break
        data[pos + 8 + n:pos + 12 + n] = struct.pack('>I', zlib.crc32(bytes(data[pos + 4:pos + 8 + n])) & 0xffffffff)
        pos += 12 + n
    return data


def _offset(draw, data, header_bias=True) -> int:
    "A position in `data`, half of the time within its first 64 bytes (where the headers are)."
    hi = len(data)
    if header_bias and draw(st.booleans()):
        hi = min(hi, 64)
    return draw(st.integers(0, hi))


def _damage_once(draw, data: bytearray, text: bool) -> bytearray:
    op = draw(st.sampled_from(['flip', 'set', 'truncate', 'insert', 'delete', 'repeat', 'huge'] +
                              (['token'] * 3 if text else [])))
    if not data and op not in ('insert', 'token'):
        return data
    i = _offset(draw, data)
    if op == 'flip' and i < len(data):
        data[i] ^= 1 << draw(st.integers(0, 7))
    elif op == 'set' and i < len(data):
        data[i] = draw(st.integers(0, 255))
    elif op == 'truncate':
        del data[i:]
    elif op == 'insert':
        data[i:i] = draw(st.binary(min_size=1, max_size=16))
    elif op == 'delete':
        del data[i:i + draw(st.integers(1, 16))]
    elif op == 'repeat':
        data[i:i] = data[i:i + draw(st.integers(1, 64))] * draw(st.integers(1, 8))
    elif op == 'huge':
        data[i:i + 4] = struct.pack(draw(st.sampled_from(['>I', '<I'])), draw(st.sampled_from(HUGE)))
    elif op == 'token':
        words = bytes(data).decode('utf-8', 'replace').split(' ')
        k = draw(st.integers(0, max(len(words) - 1, 0)))
        words[k:k + 1] = [draw(st.sampled_from(EVIL_TOKENS))]
        data = bytearray(' '.join(words).encode('utf-8', 'surrogatepass'))
    return data


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    "The (type, body) of the chunks of a valid PNG."
    pos, out = 8, []
    while pos + 12 <= len(data):
        n = struct.unpack('>I', data[pos:pos + 4])[0]
        out.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]))
        pos += 12 + n
    return out


def _png_from_chunks(chunks) -> bytes:
    return b'\x89PNG\r\n\x1a\n' + b''.join(struct.pack('>I', len(body)) + tag + body +
                                          struct.pack('>I', zlib.crc32(tag + body) & 0xffffffff)
                                          for tag, body in chunks)


def _damage_png_inside(draw, data: bytes) -> bytearray:
    """Damage that keeps the chunk structure intact (lengths and CRCs right), so that it reaches the
    decoder: the IHDR fields, the compressed IDAT bytes, or the scanlines (filter bytes, data, their
    number) re-compressed; chunks dropped, repeated or added."""
    chunks = _png_chunks(data)
    op = draw(st.sampled_from(['ihdr', 'idat', 'scanlines', 'scanlines', 'chunks']))
    if op == 'ihdr':
        ihdr = bytearray(chunks[0][1])
        i = draw(st.integers(0, len(ihdr) - 1))
        ihdr[i] = draw(st.integers(0, 255))
        chunks[0] = (b'IHDR', bytes(ihdr))
    elif op in ('idat', 'scanlines'):
        k = next(i for i, (tag, _) in enumerate(chunks) if tag == b'IDAT')
        body = bytearray(zlib.decompress(chunks[k][1])) if op == 'scanlines' else bytearray(chunks[k][1])
        for _ in range(draw(st.integers(1, 3))):
            body = _damage_once(draw, body, False)
        chunks[k] = (b'IDAT', zlib.compress(bytes(body)) if op == 'scanlines' else bytes(body))
    else:
        extra = (draw(st.sampled_from([b'IDAT', b'IHDR', b'PLTE', b'tRNS', b'zTXt', b'iCCP', b'acTL', b'fcTL',
                                       b'fdAT', b'IEND', b'xYzW'])), draw(st.binary(max_size=40)))
        i = draw(st.integers(0, len(chunks)))
        chunks = draw(st.sampled_from([chunks[:i] + [extra] + chunks[i:], chunks[:i] + chunks[i + 1:],
                                       chunks[:i + 1] + chunks[i:]]))
    return bytearray(_png_from_chunks(chunks))


@st.composite
def damaged(draw, seeds: list[bytes], png=False, text=False) -> bytes:
    """Random bytes (a quarter of the time) or a valid seed file with one to four kinds of damage (for PNG,
    half of the time damage inside the chunks that keeps lengths and CRCs right)."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=512))
    data = bytearray(draw(st.sampled_from(seeds)))
    if png and data[:8] == b'\x89PNG\r\n\x1a\n' and draw(st.booleans()):
        return bytes(_damage_png_inside(draw, bytes(data)))
    for _ in range(draw(st.integers(1, 4))):
        data = _damage_once(draw, data, text)
    if png and draw(st.booleans()):
        if draw(st.booleans()) and len(data) >= 24:  # a header declaring a huge image, with a valid CRC
            data[16:24] = struct.pack('>II', draw(st.sampled_from(HUGE)), draw(st.sampled_from(HUGE)))
        data = _fix_png_crcs(data)
    return bytes(data)


# ---------------------------------------------------------------- the check

class ReaderHung(BaseException):
    "Raised by the alarm; a BaseException, so that a reader's `except Exception` cannot swallow it."


@contextmanager
def time_limit(seconds: float):
    if not hasattr(signal, 'setitimer'):  # no SIGALRM (Windows): the deadline still reports slow examples
        yield
        return

    def on_alarm(signum, frame):
        raise ReaderHung(f'a reader ran for more than {seconds} s')
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def peak_rss() -> int:
    "The peak resident memory of this process, in bytes (ru_maxrss is in KiB on Linux, bytes on macOS)."
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if os.uname().sysname == 'Darwin' else rss * 1024


def check(read, name: str, data: bytes, names_file: bool = True) -> None:
    "Write `data` to a file and read it: a result or a DepthnbInputError (naming the file) are the only outcomes."
    path = WORK / name
    path.write_bytes(data)
    with time_limit(HANG_S), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        try:
            read(path)
        except DepthnbInputError as e:
            if names_file:
                assert str(path) in str(e), f'the error does not name the file: {e}'
    numeric = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not numeric, f'NumPy warned while reading a damaged file: {numeric[0].message}'


# ---------------------------------------------------------------- the readers

def _kitti_calib(p):
    dio.read_calib_file(p)
    cal = dio.kitti_stereo_calib(p, WORK / 'velo_to_cam.txt')
    dio.velodyne_to_depth(np.array([[10., 0.5, -0.3, 1.]]), cal, (24, 80))


def _velo_calib(p):
    cal = dio.kitti_stereo_calib(WORK / 'cam_to_cam.txt', p)
    dio.velodyne_to_depth(np.array([[10., 0.5, -0.3, 1.]]), cal, (24, 80))


def _velodyne(p):
    dio.velodyne_to_depth(dio.read_velodyne(p), (WORK / 'cam_to_cam.txt', WORK / 'velo_to_cam.txt'), (24, 80))


def _cityscapes(p):
    dio.cityscapes_labelid_to_trainid(dio.read_label_png(p))


(WORK / 'cam_to_cam.txt').write_text(CAM_TO_CAM)
(WORK / 'velo_to_cam.txt').write_text(VELO_TO_CAM)

# name: (reader, seeds, PNG damage, text damage, the error must name the file)
READERS = {
    'read_pfm': (dio.read_pfm, 'pfm', False, False, True),
    'read_kitti_png': (dio.read_kitti_png, 'kitti_png', True, False, True),
    'read_kitti_flow': (dio.read_kitti_flow, 'kitti_flow', True, False, True),
    'read_flo': (dio.read_flo, 'flo', False, False, True),
    'kitti_calib_cam_to_cam': (_kitti_calib, 'cam_to_cam', False, True, True),
    'kitti_calib_velo_to_cam': (_velo_calib, 'velo_to_cam', False, True, True),
    'read_middlebury_calib': (dio.read_middlebury_calib, 'middlebury_calib', False, True, True),
    'read_label_png': (_cityscapes, 'label_png', True, False, True),
    'read_image': (dio.read_image, 'image', True, False, True),
    'read_velodyne': (_velodyne, 'velodyne', False, False, True),
    'load_config': (lambda p: load_config({'method': 'supervised'}, p), 'config', False, True, False),
    'load_checkpoint': (load_checkpoint, 'checkpoint', False, False, True),
}


@pytest.fixture(scope='module', autouse=True)
def _remove_work_folder():
    yield
    shutil.rmtree(WORK, ignore_errors=True)


def test_seeds_are_valid():
    "The undamaged seed files read without error (otherwise the fuzzing would only exercise error paths)."
    for name, (read, kind, *_) in READERS.items():
        for data in SEEDS[kind]:
            check(read, f'{name}-seed', data)
            (WORK / f'{name}-seed').write_bytes(data)
            read(WORK / f'{name}-seed')


def _fuzz_test(name: str):
    read, kind, png, text, names_file = READERS[name]

    @FUZZ
    @given(data=damaged(SEEDS[kind], png=png, text=text))
    def run(data):
        check(read, name, data, names_file)

    def test():
        before = peak_rss()
        run()
        assert peak_rss() - before < MAX_RSS_GROWTH, f'{name}: peak memory grew by {(peak_rss() - before) >> 20} MiB'
    test.__name__ = f'test_fuzz_{name}'
    test.__doc__ = f'{name}: random and damaged files give a result or a DepthnbInputError, nothing else.'
    return test


for _name in READERS:
    globals()[f'test_fuzz_{_name}'] = _fuzz_test(_name)
