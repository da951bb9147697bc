"""`Street(traffic=…)`: denser traffic for the SGDepth and CoopNet experiments. The default street must stay
the one it was before the option existed (hashes taken from the renderer before the change), and every
density must be deterministic by seed."""
import hashlib
import json
import math

import pytest
import torch

from depthnb.core import DepthnbInputError
from depthnb.data.synthetic import (TRAFFIC_RATES, CachedWorld, Street, SyntheticVideo, cache_description,
                                    make_world, write_cache)

# Scene hashes (the first 16 hex digits of SHA-256 over the Scene's tensors) and rendered means of the
# default street, computed with the renderer as it was before `traffic` existed.
SCENES_BEFORE = {
    'kitti': ['5214872982a4eb8a', 'bdfb0df495366683', '75a562dd7e91f1f6', 'f4218c9151e5e70e'],
    'city': ['b63357e55ead461c', '34f0183f4cb9c5d9', 'fe25a88646b94379', '05375e688edf5051'],
}
MEANS_BEFORE = {
    'kitti': {'left': 0.338746, 'left_next': 0.324573, 'moving': 0.020833, 'flow_next': 0.120274},
    'city': {'left': 0.239536, 'left_next': 0.23261, 'moving': 0.001302, 'flow_next': 0.096917},
}


def scene_hash(scene) -> str:
    digest = hashlib.sha256()
    for key, value in scene.__dict__.items():
        if torch.is_tensor(value):
            digest.update(key.encode())
            digest.update(value.contiguous().reshape(-1).numpy().tobytes())
    return digest.hexdigest()[:16]


@pytest.mark.parametrize('style', ['kitti', 'city'])
def test_default_street_is_unchanged(style):
    world = Street(seed=3, size=(16, 48), style=style, n=4)
    assert [scene_hash(world.scene(i)[0]) for i in range(4)] == SCENES_BEFORE[style]
    explicit = Street(seed=3, size=(16, 48), style=style, n=4, traffic=1)
    assert [scene_hash(explicit.scene(i)[0]) for i in range(4)] == SCENES_BEFORE[style]
    sample = Street(seed=3, size=(16, 48), style=style, video=True, n=4)[1]
    for key, mean in MEANS_BEFORE[style].items():
        assert float(sample[key].float().mean()) == pytest.approx(mean, abs=2e-6), key


def test_traffic_is_deterministic_and_adds_to_the_same_scene():
    dense = Street(seed=5, size=(24, 72), n=6, traffic=3.5)
    again = Street(seed=5, size=(24, 72), n=6, traffic=3.5)
    plain = Street(seed=5, size=(24, 72), n=6)
    for i in range(6):
        a, b, c = plain.scene(i)[0], dense.scene(i)[0], again.scene(i)[0]
        assert scene_hash(b) == scene_hash(c)
        prims, insts = len(a.kind), len(a.inst_c)
        for key in ('kind', 'c', 'size', 'sem', 'tex', 'color'):
            assert torch.equal(getattr(b, key)[:prims], getattr(a, key)), key
        for key in ('inst_c', 'inst_v', 'cam_c', 'cam_R', 'cam_v', 'cam_w'):
            ref = getattr(a, key)
            assert torch.equal(getattr(b, key)[:insts] if key.startswith('inst') else getattr(b, key), ref)
        assert set(b.sem[prims:].tolist()) <= {11, 13}           # only cars and people are added
        assert bool(b.moving[insts:].all())                        # and every one of them moves
    s1, s2 = dense[4], again[4]
    for key in ('left', 'moving', 'semantic', 'depth_l'):
        assert torch.equal(s1[key], s2[key])
    assert not torch.equal(Street(seed=6, size=(24, 72), traffic=3.5)[4]['left'], s1['left'])


def test_traffic_raises_the_moving_share():
    n = 12
    share = {t: sum(float(Street(seed=2, size=(24, 72), n=n, traffic=t)[i]['moving'].float().mean())
                    for i in range(n)) / n for t in (1, 3)}
    assert share[3] > 3 * share[1] and share[3] > 0.04, share


def test_added_objects_follow_the_rates():
    """Over many scenes the number of added moving instances is about Σ rates · (traffic − 1) (2 pavements),
    a little fewer because a spot that is not free is skipped."""
    k = 2.0
    added = []
    for i in range(60):
        base = Street(seed=9, n=60).scene(i)[0]
        dense = Street(seed=9, n=60, traffic=1 + k).scene(i)[0]
        added.append(len(dense.inst_c) - len(base.inst_c))
    expected = k * (TRAFFIC_RATES['ahead'] + TRAFFIC_RATES['oncoming'] + 2 * TRAFFIC_RATES['walking']
                    + TRAFFIC_RATES['crossing'])
    mean = sum(added) / len(added)
    assert 0.7 * expected < mean <= expected + 3 * math.sqrt(expected / len(added)), (mean, expected)


@pytest.mark.parametrize('bad', [0.5, 0, -1, float('nan'), float('inf'), '3', True, None])
def test_bad_traffic_is_refused(bad):
    with pytest.raises(DepthnbInputError, match='traffic'):
        Street(traffic=bad)


def test_traffic_reaches_the_datasets_and_the_cache(tmp_path):
    world = make_world('street', seed=1, size=(16, 48), n=2, traffic=4)
    assert world.traffic == 4.0 and 'traffic=4' in repr(world)
    assert 'traffic' not in repr(make_world('street', n=2))
    assert make_world('city', n=2, traffic=2).traffic == 2.0
    video = SyntheticVideo('street', seed=1, size=(16, 48), n=2, traffic=4)
    assert torch.equal(video[1]['left'], world[1]['left'])
    assert cache_description(world)['traffic'] == 4.0
    assert 'traffic' not in cache_description(Street(n=2))         # default caches keep their description
    write_cache(world, tmp_path / 'dense', progress=False)
    assert json.loads((tmp_path / 'dense' / 'meta.json').read_text())['traffic'] == 4.0
    assert torch.equal(CachedWorld(tmp_path / 'dense')[1]['moving'], world[1]['moving'])
    with pytest.raises(DepthnbInputError, match='another world'):
        write_cache(make_world('street', seed=1, size=(16, 48), n=2), tmp_path / 'dense', progress=False)
