"""`depthnb export RUN --onnx FILE` (issue 15): onnxruntime's disparity against PyTorch's `method.predict`
within 1e-4 px, for a DispNet run and a monocular LSIM run (with its flip post-processing), at batch sizes and
image sizes other than the traced ones; the input and output names and dynamic axes, and the fixed-size
fallback where the network's padding does not trace; a clear error without onnx."""
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

import depthnb
from depthnb.api import export_onnx
from depthnb.cli import main
from depthnb.core import DepthnbInputError

from test_predict import make_run


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "2-step runs at 32×64: DispNet (stereo) and LSIM (mono, box SSIM, flip post-processing)."
    root = tmp_path_factory.mktemp('runs')
    return {'dispnet': make_run('supervised', root / 'dispnet', width=8),
            'lsim': make_run('lsim', root / 'lsim', variant='siamese_box_ssim', post_process=True)}


def compare(run, path, inputs, shapes):
    "onnxruntime on the file at `path` against `method.predict` of `run`, at each (batch, H, W) of `shapes`."
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    assert [i.name for i in session.get_inputs()] == inputs
    assert [o.name for o in session.get_outputs()] == ['disp']
    method = depthnb.load(run, 'cpu')
    gen = torch.Generator().manual_seed(3)
    for batch, h, w in shapes:
        images = [torch.rand(batch, 3, h, w, generator=gen) for _ in inputs]
        expected = method.predict(*images)['disp'].numpy()
        got, = session.run(['disp'], {name: x.numpy() for name, x in zip(inputs, images)})
        assert got.shape == (batch, 1, h, w)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    return session


@pytest.mark.parametrize('kind, inputs, size, shapes', [
    ('dispnet', ['left', 'right'], (64, 192), ((1, 64, 192), (3, 70, 200), (2, 100, 260))),
    ('lsim', ['left'], (64, 96), ((1, 64, 96), (3, 64, 100), (2, 70, 130), (1, 128, 128)))])
def test_onnxruntime_matches_pytorch(runs, tmp_path, kind, inputs, size, shapes):
    path = tmp_path / f'{kind}.onnx'
    assert main(['export', str(runs[kind]), '--onnx', str(path), '--size', *map(str, size)]) == 0
    session = compare(runs[kind], path, inputs, shapes)
    assert session.get_inputs()[0].shape == ['batch', 3, 'height', 'width']


def test_fixed_size_where_padding_does_not_trace(runs, tmp_path, capsys):
    # LSIM's DepthNet pads images below 64 px up to 64: traced at 32×64 (the training size), the graph would
    # be wrong above 64 rows, the check sees it, and the file gets a fixed 32×64 with a dynamic batch
    path = tmp_path / 'lsim.onnx'
    assert main(['export', str(runs['lsim']), '--onnx', str(path)]) == 0
    assert 'fixed' in capsys.readouterr().out
    session = compare(runs['lsim'], path, ['left'], ((1, 32, 64), (3, 32, 64)))
    assert session.get_inputs()[0].shape == ['batch', 3, 32, 64]


def test_export_reports_its_check(runs, tmp_path):
    method = depthnb.load(runs['dispnet'], 'cpu')
    result = export_onnx(method, tmp_path / 'a.onnx', size=(64, 130))
    assert result['inputs'] == ['left', 'right'] and result['max_abs_diff'] < 1e-4
    assert result['dynamic'] == ['batch', 'height', 'width'] and result['size'] == (63, 129)
    assert result['path'].is_file() and not method.training
    assert export_onnx(method, tmp_path / 'b.onnx', check=False)['max_abs_diff'] is None


def test_missing_onnx_says_what_to_install(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'onnx', None)                 # `import onnx` raises ImportError
    with pytest.raises(DepthnbInputError, match='pip install onnx onnxruntime'):
        export_onnx(depthnb.load(runs['dispnet'], 'cpu'), tmp_path / 'a.onnx')
    assert main(['export', str(runs['dispnet']), '--onnx', str(tmp_path / 'a.onnx')]) == 2
    assert 'pip install onnx' in capsys.readouterr().err
    assert not (tmp_path / 'a.onnx').exists()
