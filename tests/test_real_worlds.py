"""Renderer options closer to real cameras (issue 10, `depthnb.data.synthetic.Realism`): the default worlds
are bit-identical to before the options existed (hashes computed on this machine before the change, torch
2.14.1), every option is deterministic by seed, and caches record the options (the default's record is
unchanged)."""
import hashlib

import pytest
import torch

from depthnb.data.synthetic import (FlyingObjects, Realism, Street, SyntheticStereo, cache_description,
                                    make_world)

BEFORE = {  # sha256 of every tensor of samples 0–2 (seed 7, 24×40), rendered before `Realism` existed
    ('flying', False): '48d7cf57e3f6eba50169af8487165b36a9ebb2bdd77f5bfb3a0e78fdccf698cd',
    ('flying', True): '586c3e6384678dbdb7433a6e41ff6d5a7229c734d4393819fbd810b1ba663852',
    ('street', False): '1a3a809c78dc4b0f5776d331973aa5f7bb8da13143fd844f78a74ff1a0974356',
    ('street', True): 'db2084327c799cf69cedd141f7bd0b3931c3606d83b0f1745f4560dfb93333cb',
    ('city', False): 'cc8c6669f2269e0f1e2dc6e83c8078f3032909172813780ce057e12273b9d5e3',
}
REALISTIC = dict(disparity_scale=(0.5, 2.0), texture_jitter=True, patterns=0.3, defocus=1.0, clutter=2.)


def digest(world, indices) -> str:
    h = hashlib.sha256()
    for i in indices:
        sample = world[i]
        for key in sorted(sample):
            value = sample[key]
            if isinstance(value, torch.Tensor):
                h.update(key.encode())
                h.update(value.contiguous().numpy().tobytes())
            else:
                h.update(f'{key}={value}'.encode())
    return h.hexdigest()


@pytest.mark.skipif(not torch.__version__.startswith('2.14.1'), reason='hashes taken with torch 2.14.1')
@pytest.mark.parametrize('name,video', list(BEFORE))
def test_default_worlds_unchanged(name, video):
    for realism in (None, {}, Realism()):
        world = make_world(name, seed=7, size=(24, 40), n=3, video=video, realism=realism)
        assert digest(world, range(3)) == BEFORE[(name, video)]


def test_realistic_world_is_deterministic_and_different():
    a = FlyingObjects(seed=5, size=(32, 64), n=2, realism=REALISTIC)
    b = FlyingObjects(seed=5, size=(32, 64), n=2, realism=dict(REALISTIC))
    assert digest(a, [0, 1]) == digest(b, [0, 1])
    assert digest(a, [0, 1]) != digest(FlyingObjects(seed=5, size=(32, 64), n=2), [0, 1])
    assert digest(a, [0, 1]) != digest(FlyingObjects(seed=6, size=(32, 64), n=2, realism=REALISTIC), [0, 1])


def test_options_are_independent():
    """An option's draws do not depend on the others: the baseline factor of a scene is the same with or
    without texture jitter and patterns."""
    wide = FlyingObjects(seed=5, size=(24, 48), n=2, realism=dict(disparity_scale=(0.5, 2.0)))
    both = FlyingObjects(seed=5, size=(24, 48), n=2, realism=dict(disparity_scale=(0.5, 2.0), patterns=0.5,
                                                                  texture_jitter=True))
    assert wide.scene(1)[1]['baseline'] == both.scene(1)[1]['baseline'] != FlyingObjects.baseline
    torch.testing.assert_close(wide[1]['disp_l'], both[1]['disp_l'])


def test_street_takes_realism_and_caches_record_it():
    plain, realistic = Street(seed=1, size=(24, 48), n=1), Street(seed=1, size=(24, 48), n=1,
                                                                   realism=dict(defocus=2.))
    assert 'realism' not in cache_description(plain)
    assert cache_description(realistic)['realism']['defocus'] == 2.
    assert torch.equal(plain[0]['disp_l'], realistic[0]['disp_l'])
    assert not torch.equal(plain[0]['left'], realistic[0]['left'])
    ds = SyntheticStereo('flying', size=(24, 48), n=1, realism={'patterns': 1.0})    # as config data
    assert ds.source.realism == Realism(patterns=1.0)
