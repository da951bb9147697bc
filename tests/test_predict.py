"""`depthnb predict` on real PNG and JPEG files written to disk (issue 15): a DispNet run and a monocular LSIM
run, each made by a 2-step `depthnb.train` at a tiny size, checked against `method.predict` on the same images
decoded by Pillow; folders paired by name; metric depth; and the clear errors that name the file."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import depthnb
from depthnb.cli import main
from depthnb.data.datasets import RealPair
from depthnb.data.io import read_image, read_pfm
from depthnb.method import method_class


def make_run(method: str, out: Path, size=(32, 64), **method_args) -> Path:
    "A run folder of `method` trained by `depthnb.train` for 2 steps of batch 2 on 4 synthetic samples."
    config = method_class(method).default_config()
    for data in config['data'].values():
        data['args'].update(size=list(size), n=4)
    config['stages'] = [dict(stage, steps=2, milestones=[]) for stage in config['stages']]
    config['method_args'] = config.get('method_args', {}) | method_args
    config.update(out=str(out), progress=False, tensorboard=False, batch_size=2, ckpt_every=0, image_every=0)
    torch.manual_seed(0)
    depthnb.train(config)
    return out


@pytest.fixture(scope='module')
def dispnet_run(tmp_path_factory):
    return make_run('supervised', tmp_path_factory.mktemp('runs') / 'dispnet', width=8)


@pytest.fixture(scope='module')
def lsim_run(tmp_path_factory):
    "LSIM (monocular) with the box SSIM (a 3×3 window fits the tiny coarse scales) and flip post-processing."
    return make_run('lsim', tmp_path_factory.mktemp('runs') / 'lsim', variant='siamese_box_ssim',
                    post_process=True)


def save(path: Path, img: torch.Tensor, **kwargs) -> Path:
    "A 3×H×W image in [0, 1] written by Pillow (PNG or JPEG by the suffix)."
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path, **kwargs)
    return path


def pillow(path: Path) -> torch.Tensor:
    "The image file as 1×3×H×W in [0, 1], decoded by Pillow (a reader independent of depthnb's OpenCV path)."
    rgb = np.asarray(Image.open(path).convert('RGB'), dtype=np.float32) / 255
    return torch.from_numpy(rgb).permute(2, 0, 1)[None]


@pytest.fixture(scope='module')
def motorcycle(tmp_path_factory):
    "The real Motorcycle pair at 1/8 (62×92) as PNG files and as JPEG files, in left/ and right/ folders."
    root = tmp_path_factory.mktemp('images')
    pair = RealPair(factor=8)[0]
    for side in ('left', 'right'):
        save(root / side / 'moto.png', pair[side])
        save(root / side / 'moto_mirrored.jpg', pair[side].flip(-1), quality=90)
    return root


# predict runs on the default device (CUDA when there is one), and so does the reference
ATOL = 1e-4 if torch.cuda.is_available() else 1e-5


def expected_disp(run: Path, left: Path, right: Path | None = None, **kwargs) -> dict:
    "`method.predict` in Python on the images as Pillow decodes them."
    method = depthnb.load(run)
    return {k: v.cpu() for k, v in method.predict(pillow(left), None if right is None else pillow(right),
                                                   **kwargs).items()}


def test_dispnet_png_pair(dispnet_run, motorcycle, tmp_path):
    left, right = motorcycle / 'left' / 'moto.png', motorcycle / 'right' / 'moto.png'
    argv = ['predict', '--checkpoint', str(dispnet_run), '--out', str(tmp_path), str(left), str(right)]
    assert main(argv) == 0
    expected = expected_disp(dispnet_run, left, right)['disp'][0, 0].numpy()
    got = np.load(tmp_path / 'moto_disp.npy')
    assert got.shape == (62, 92) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    np.testing.assert_array_equal(read_pfm(tmp_path / 'moto_disp.pfm'), got)
    assert np.asarray(Image.open(tmp_path / 'moto_disp.png')).shape == (62, 92, 3)
    assert not (tmp_path / 'moto_depth.npy').exists()            # no --focal, --baseline: no depth


def test_dispnet_folders_of_jpeg_and_png_with_depth(dispnet_run, motorcycle, tmp_path):
    focal, baseline = 124.4, 0.193
    argv = ['predict', '--checkpoint', str(dispnet_run), '--out', str(tmp_path), '--focal', str(focal),
            '--baseline', str(baseline), str(motorcycle / 'left'), str(motorcycle / 'right')]
    assert main(argv) == 0
    for name, suffix in (('moto', '.png'), ('moto_mirrored', '.jpg')):
        left, right = motorcycle / 'left' / f'{name}{suffix}', motorcycle / 'right' / f'{name}{suffix}'
        torch.testing.assert_close(read_image(left)[None], pillow(left), atol=0.5 / 255, rtol=0)
        expected = expected_disp(dispnet_run, left, right)['disp'][0, 0].numpy()
        disp = np.load(tmp_path / f'{name}_disp.npy')
        np.testing.assert_allclose(disp, expected, atol=ATOL, rtol=0)
        depth = np.load(tmp_path / f'{name}_depth.npy')
        np.testing.assert_allclose(depth, focal * baseline / np.maximum(disp, 1e-6), rtol=1e-5)
        np.testing.assert_array_equal(read_pfm(tmp_path / f'{name}_depth.pfm'), depth)
        assert (tmp_path / f'{name}_depth.png').is_file()


def test_mono_lsim(lsim_run, motorcycle, tmp_path, capsys):
    left = motorcycle / 'left' / 'moto_mirrored.jpg'
    argv = ['predict', '--checkpoint', str(lsim_run), '--out', str(tmp_path), str(left)]
    assert main(argv) == 0
    expected = expected_disp(lsim_run, left)['disp'][0, 0].numpy()
    np.testing.assert_allclose(np.load(tmp_path / 'moto_mirrored_disp.npy'), expected, atol=ATOL, rtol=0)
    # a monocular method does not read a RIGHT image (even a broken one) and says so; and what its depth is
    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(b'not a jpeg')
    argv = ['predict', '--checkpoint', str(lsim_run), '--out', str(tmp_path / 'depth'), '--focal', '100',
            '--baseline', '0.5', str(left), str(broken)]
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert 'monocular' in said and 'RIGHT is not read' in said and 'stereo rig it was trained on' in said
    depth = np.load(tmp_path / 'depth' / 'moto_mirrored_depth.npy')
    np.testing.assert_allclose(depth, 100 * 0.5 / np.maximum(expected, 1e-6), rtol=1e-5)


def write_folder_pair(root: Path, names=('a', 'b'), size=(20, 30)) -> tuple[Path, Path]:
    gen = torch.Generator().manual_seed(0)
    for side in ('left', 'right'):
        for name in names:
            save(root / side / f'{name}.png', torch.rand(3, *size, generator=gen))
    return root / 'left', root / 'right'


def failing_predict(run: Path, out: Path, capsys, *inputs, extra=()) -> str:
    "Run predict, expect exit status 2 and nothing written; the error message."
    assert main(['predict', '--checkpoint', str(run), '--out', str(out), *extra, *map(str, inputs)]) == 2
    assert not out.exists() or not any(out.iterdir())
    err = capsys.readouterr().err
    assert err.startswith('depthnb predict: error: ') and err.count('\n') == 1, err   # one line, no traceback
    return err


def test_error_mismatched_sizes_names_the_file(dispnet_run, tmp_path, capsys):
    left, right = write_folder_pair(tmp_path / 'in')
    save(right / 'b.png', torch.rand(3, 20, 31))
    err = failing_predict(dispnet_run, tmp_path / 'out', capsys, left, right)  # before 'a' is written
    assert str(right / 'b.png') in err and '(20, 31)' in err
    err = failing_predict(dispnet_run, tmp_path / 'out', capsys, left / 'b.png', right / 'b.png')
    assert str(right / 'b.png') in err


@pytest.mark.parametrize('content', [b'', b'\x89PNG\r\n\x1a\n' + b'garbage' * 10, b'GIF89a...'])
def test_error_unreadable_file_names_it(dispnet_run, tmp_path, capsys, content):
    left, right = write_folder_pair(tmp_path / 'in')
    (left / 'b.png').write_bytes(content)
    assert str(left / 'b.png') in failing_predict(dispnet_run, tmp_path / 'out', capsys, left, right)
    assert str(left / 'b.png') in failing_predict(dispnet_run, tmp_path / 'out', capsys, left / 'b.png',
                                                  right / 'b.png')
    missing = tmp_path / 'in' / 'missing.png'
    assert str(missing) in failing_predict(dispnet_run, tmp_path / 'out', capsys, missing, right / 'a.png')


@pytest.mark.parametrize('mode', ['L', 'LA'])
def test_error_wrong_channels_names_the_file(dispnet_run, tmp_path, capsys, mode):
    left, right = write_folder_pair(tmp_path / 'in')
    grey = np.zeros((20, 30) + ((2,) if mode == 'LA' else ()), np.uint8)
    Image.fromarray(grey, mode).save(right / 'b.png')
    err = failing_predict(dispnet_run, tmp_path / 'out', capsys, left, right)
    assert str(right / 'b.png') in err and 'grey' in err
    assert main(['predict', '--checkpoint', str(dispnet_run), '--out', str(tmp_path / 'out'), '--grey',
                 str(left), str(right)]) == 0                  # --grey repeats it over 3 channels
    assert np.load(tmp_path / 'out' / 'b_disp.npy').shape == (20, 30)


def test_error_unmatched_names_and_missing_right(dispnet_run, tmp_path, capsys):
    left, right = write_folder_pair(tmp_path / 'in')
    save(right / 'c.png', torch.rand(3, 20, 30))
    err = failing_predict(dispnet_run, tmp_path / 'out', capsys, left, right)
    assert f'only in {right}: c' in err
    err = failing_predict(dispnet_run, tmp_path / 'out', capsys, left)
    assert 'stereo method' in err and 'RIGHT' in err
    err = failing_predict(dispnet_run, tmp_path / 'out', capsys, left, right / 'a.png')
    assert 'two images or two folders' in err
    err = failing_predict(dispnet_run, tmp_path / 'out', capsys, left, right, extra=['--focal', '100'])
    assert '--focal and --baseline' in err
