"""The pixel inspector of depthnb.analysis.matching: its readout against NumPy, its figures, and the widget's
wiring (a click as plotly's frontend sends it, the sliders, the sample and entropy-map selectors)."""
import math

import numpy as np
import pytest
import torch

from depthnb.analysis.matching import (PixelInspector, dispnet_feature_costs, inspect_pixel,
                                       inspector_curve_figure, inspector_image_figure, inspector_match_figure,
                                       inspector_view, matching_costs, model_view, pixel_figure,
                                       pixel_readout)
from depthnb.core import DepthnbInputError

from conftest import gen

pytest.importorskip('plotly')
pytest.importorskip('ipywidgets')


def pair(h=8, w=24, shift=3, seed=0):
    right = torch.rand(1, 3, h, w, generator=gen(seed))
    return torch.roll(right, shift, dims=-1), right


def toy_view(h=8, w=24, seed=0, preds=True):
    left, right = pair(h, w, seed=seed)
    disps = torch.arange(7.)
    curves = {'L1': matching_costs(left, right, disps, 'l1'),
              'SSIM-mix': matching_costs(left, right, disps, 'ssim')}
    gt = torch.full((1, 1, h, w), 3.)
    gt[..., 0, 0] = float('nan')
    p = {'A': torch.full((1, 1, h, w), 2.5), 'B': torch.full((h, w), 3.25)} if preds else None
    return inspector_view(left, right, curves, disps, gt=gt, preds=p), curves, disps


def softmin_oracle(volume, x, y, t=0.1):
    "NumPy: softmin over D of the image-normalised costs at (x, y), NaN candidates with probability 0."
    vol = volume[0].double().numpy()
    c = vol[:, y, x] / np.nanmean(vol) / t
    p = np.where(np.isnan(c), 0., np.exp(-(c - np.nanmin(c))))
    return p / p.sum()


def test_readout_matches_numpy():
    view, curves, disps = toy_view()
    for x, y in [(10, 4), (1, 0), (23, 7)]:                  # (1, 0): candidates 2…6 look out of view
        r = pixel_readout(view, x, y)
        for k, c in curves.items():
            p = softmin_oracle(c, x, y)
            np.testing.assert_allclose(r['curves'][k]['prob'].numpy(), p, atol=1e-5)
            assert r['curves'][k]['entropy'] == pytest.approx(-(p[p > 0] * np.log(p[p > 0])).sum(), abs=1e-4)
            raw = c[0, :, y, x].numpy()
            assert r['curves'][k]['argmin'] == float(disps[np.nanargmin(raw)])
            np.testing.assert_allclose(r['curves'][k]['cost'].numpy(), raw)
            shape = (raw - np.nanmin(raw)) / (np.nanmax(raw) - np.nanmin(raw))
            np.testing.assert_allclose(r['curves'][k]['shape'].numpy(), shape, atol=1e-6)
            assert r['matched'][f'argmin {k}'] == x - r['curves'][k]['argmin']
        assert r['preds'] == {'A': 2.5, 'B': 3.25}
        assert (r['matched']['A'], r['matched']['B']) == (x - 2.5, x - 3.25)
    assert pixel_readout(view, 10, 4)['curves']['SSIM-mix']['argmin'] == 3.      # the true shift
    assert math.isnan(pixel_readout(view, 0, 0)['gt'])
    assert pixel_readout(view, 10, 4)['matched']['GT'] == 7.


def test_bad_input_names_the_argument():
    view, curves, disps = toy_view()
    left, right = pair()
    with pytest.raises(DepthnbInputError, match='x must be'):
        pixel_readout(view, 24, 0)
    with pytest.raises(DepthnbInputError, match='y must be'):
        pixel_readout(view, 0, -1)
    with pytest.raises(DepthnbInputError, match=r"curves\['L1'\]"):
        inspector_view(left, right, {'L1': curves['L1'][:, :-1]}, disps)
    with pytest.raises(DepthnbInputError, match='left and right'):
        inspector_view(left, right[..., :-1], curves, disps)
    with pytest.raises(DepthnbInputError, match=r"preds\['A'\]"):
        inspector_view(left, right, curves, disps, preds={'A': torch.zeros(8, 23)})
    with pytest.raises(DepthnbInputError, match='layer'):
        inspector_image_figure(view, 'nope', 0, 0)
    with pytest.raises(DepthnbInputError, match='features'):
        model_view(left, right, {}, features=('DFR',))
    with pytest.raises(DepthnbInputError, match=r"views\['b'\]"):
        PixelInspector({'a': view, 'b': toy_view(preds=False)[0]})


def test_figures_draw_the_readout():
    view, curves, disps = toy_view()
    r = pixel_readout(view, 10, 4)
    cf = inspector_curve_figure(view, 10, 4, 'toy')
    assert cf.layout.title.text == 'pixel (10, 4) · toy · GT 3.00 px'
    by_name = {t.name: t for t in cf.data}
    shown = by_name[f"L1 · H = {r['curves']['L1']['entropy']:.2f}"]
    np.testing.assert_allclose(shown.y, r['curves']['L1']['shape'].numpy())
    np.testing.assert_allclose(shown.customdata, r['curves']['L1']['cost'].numpy())       # hover: raw cost
    assert [by_name[n].x for n in ('GT 3.00', 'A 2.50', 'B 3.25')] == [(3., 3.), (2.5, 2.5), (3.25, 3.25)]
    argmins = [t for t in cf.data if t.name and t.name.startswith('argmin')]
    assert sorted(t.x[0] for t in argmins) == sorted(c['argmin'] for c in r['curves'].values())
    mf = inspector_match_figure(view, 10, 4)
    marks = {t.name: t.x[0] for t in mf.data if t.name in r['matched']}
    assert marks == r['matched']
    imf = inspector_image_figure(view, 'L1', 10, 4)
    np.testing.assert_allclose(imf.data[1].z, view['entropy']['L1'].numpy())
    np.testing.assert_array_equal(imf.data[0].z, (view['left'].permute(1, 2, 0) * 255).round().byte().numpy())
    assert [(t.x, t.y) for t in imf.data[2:]] == [((10,), (4,))] * 2
    fig = pixel_figure(view, 10, 4)
    assert fig.axes[0].get_title() == 'pixel (10, 4)'
    import matplotlib.pyplot as plt
    plt.close(fig)


def click(inspector, x, y, trace=1):
    "A click on the image figure as plotly's frontend reports it to the kernel."
    from plotly.callbacks import Points
    points = Points(point_inds=[[y, x]], xs=[x], ys=[y], trace_name='', trace_index=trace)
    inspector.image.data[trace]._dispatch_on_click(points, None)


def test_widget_click_sliders_and_selectors():
    small, curves, disps = toy_view()
    big = toy_view(h=16, w=40, seed=1)[0]
    insp = PixelInspector({'small': small, 'big': big}, x=2, y=3, layer='L1')
    assert insp.curves.layout.title.text.startswith('pixel (2, 3) · small')
    n_traces = [len(f.data) for f in (insp.image, insp.curves, insp.match)]
    insp.image.layout.xaxis.range = (5, 15)                        # a user's zoom on the image
    click(insp, 20, 6)
    assert (insp.x.value, insp.y.value) == (20, 6)
    assert insp.curves.layout.title.text.startswith('pixel (20, 6) · small')
    r = pixel_readout(small, 20, 6)
    np.testing.assert_allclose(insp.curves.data[0].y, r['curves']['L1']['shape'].numpy())
    assert [t.x[0] for t in insp.match.data if t.name == 'GT'] == [r['matched']['GT']]
    assert insp.image.layout.xaxis.range == (5, 15)                # kept on a new pixel
    click(insp, 7, 1, trace=0)                                     # a click on the left image works as well
    assert insp.curves.layout.title.text.startswith('pixel (7, 1)')
    insp.y.value = 5                                               # as a slider move does
    assert insp.curves.layout.title.text.startswith('pixel (7, 5)')
    insp.layer.value = 'SSIM-mix'
    assert insp.image.layout.annotations[1].text == 'entropy of SSIM-mix (nats)'
    np.testing.assert_allclose(insp.image.data[1].z, small['entropy']['SSIM-mix'].numpy())
    insp.sample.value = 'big'
    assert (insp.x.max, insp.y.max) == (39, 15)
    assert insp.image.data[1].z.shape == (16, 40)
    assert insp.image.layout.xaxis.range == (-0.5, 39.5)           # a new sample resets the axes
    click(insp, 39, 15)
    assert insp.curves.layout.title.text.startswith('pixel (39, 15) · big')
    insp.sample.value = 'small'                                    # the pixel is clamped into the image
    assert (insp.x.value, insp.y.value) == (23, 7)
    assert insp.curves.layout.title.text.startswith('pixel (23, 7) · small')
    assert [len(f.data) for f in (insp.image, insp.curves, insp.match)] == n_traces
    with pytest.raises(DepthnbInputError, match='x must be'):
        insp.select(24, 0)
    one = inspect_pixel(*pair(), curves, disps, x=4, y=2)
    assert one.curves.layout.title.text.startswith('pixel (4, 2) · sample')


def test_model_view_with_two_models():
    from depthnb.methods.dfr import DFR
    torch.manual_seed(0)
    models = {'DFR': DFR('semi_dfr', width=8).eval(), 'PH': DFR('semi_ph', width=8).eval()}
    left, right = pair(32, 64)
    gt = torch.full((1, 1, 32, 64), 5.4)
    view = model_view(left, right, models, gt=gt)
    assert list(view['curves']) == ['L1', 'SSIM-mix', 'DFR feat-cosine', 'DFR feat-l1', 'DFR feat-l2']
    np.testing.assert_array_equal(view['disps'].numpy(), np.arange(9.))       # 0 … ⌈max GT⌉ + 2
    ref = dispnet_feature_costs(models['DFR'], left, right, view['disps'], 'cosine')[0]
    np.testing.assert_allclose(view['curves']['DFR feat-cosine'].nan_to_num(-1), ref.nan_to_num(-1))
    for name, model in models.items():
        with torch.no_grad():
            pred = model.predict(left, right)['disp'][0, 0]
        np.testing.assert_allclose(view['preds'][name], pred, atol=1e-6)
    both = model_view(left[0], right[0], models, disps=torch.arange(4.), features=('DFR', 'PH'),
                      metrics=('l2',))
    assert list(both['curves']) == ['L1', 'SSIM-mix', 'DFR feat-l2', 'PH feat-l2']
