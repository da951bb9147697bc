"""Real-camera augmentation (issue 10): vertical misalignment of the right view and JPEG artefacts, checked
against scipy and OpenCV, deterministic by seed, and never touching the raw images or the labels."""
import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage

from depthnb.core import DepthnbInputError
from depthnb.data.datasets import (ColorAugment, Compose, JpegArtefacts, VerticalMisalign, jpeg_roundtrip,
                                   shift_rows)
from depthnb.data.synthetic import SyntheticStereo


@pytest.fixture(scope='module')
def sample():
    return SyntheticStereo('flying', size=(32, 64), n=1)[0]


def test_shift_rows_is_scipy_linear_shift():
    img = torch.rand(3, 9, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for dy in (0.37, -0.8, 1.5):
        ours = shift_rows(img, dy).numpy()
        ref = ndimage.shift(img.numpy(), (0, -dy, 0), order=1, mode='nearest')
        np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_vertical_misalign_moves_only_the_right_input(sample):
    out = VerticalMisalign(max_shift=0.5, seed=7)(sample)
    dy = VerticalMisalign(max_shift=0.5, seed=7).draw()
    assert 0 < abs(dy) <= 0.5
    torch.testing.assert_close(out['right_aug'], shift_rows(sample['right'], dy))
    assert torch.equal(out['left_aug'], sample['left'])
    for key in ('left', 'right', 'disp_l', 'occ_l', 'disp_r'):
        assert torch.equal(out[key], sample[key])
    again = VerticalMisalign(max_shift=0.5, seed=7)(sample)
    assert torch.equal(again['right_aug'], out['right_aug'])
    assert not torch.equal(VerticalMisalign(max_shift=0.5, seed=8)(sample)['right_aug'], out['right_aug'])
    assert torch.equal(VerticalMisalign(p=0., seed=7)(sample)['right_aug'], sample['right'])


def test_jpeg_matches_opencv(sample):
    img = sample['left']
    rgb = (img * 255).round().byte().permute(1, 2, 0).numpy()
    ok, data = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 35])
    ref = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal((jpeg_roundtrip(img, 35) * 255).round().byte().permute(1, 2, 0).numpy(), ref)


def test_jpeg_artefacts_deterministic_and_input_only(sample):
    t = JpegArtefacts(quality=(20, 60), seed=3)
    quality = JpegArtefacts(quality=(20, 60), seed=3).draw()
    assert 20 <= quality <= 60
    out = t(sample)
    for view in ('left', 'right'):
        torch.testing.assert_close(out[f'{view}_aug'], jpeg_roundtrip(sample[view], quality))
        assert torch.equal(out[view], sample[view])
    assert torch.equal(JpegArtefacts(quality=(20, 60), seed=3)(sample)['left_aug'], out['left_aug'])
    assert (out['left_aug'] - sample['left']).abs().mean() > 1e-3


def test_chain_after_colour(sample):
    chain = Compose([ColorAugment(seed=1), VerticalMisalign(seed=1), JpegArtefacts(quality=(50, 50), seed=1)])
    out = chain(sample)
    coloured = ColorAugment(seed=1)(sample)
    dy = VerticalMisalign(seed=1).draw()
    torch.testing.assert_close(out['right_aug'], jpeg_roundtrip(shift_rows(coloured['right_aug'], dy), 50))
    torch.testing.assert_close(out['left_aug'], jpeg_roundtrip(coloured['left_aug'], 50))


def test_bad_arguments():
    with pytest.raises(DepthnbInputError, match='quality'):
        JpegArtefacts(quality=(90, 80))
    with pytest.raises(DepthnbInputError, match='max_shift'):
        VerticalMisalign(max_shift=10)
    with pytest.raises(DepthnbInputError, match='3×H×W'):
        jpeg_roundtrip(torch.rand(1, 8, 8), 50)
