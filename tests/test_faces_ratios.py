"""Eye / lip openness ratios: plausible on a real face, monotone under synthetic edits, invariant."""

import numpy as np
import pytest

from liveportrait_jax.faces import ratios as R
from liveportrait_jax.faces.landmarks import detect_face


@pytest.fixture(scope='module')
def lm():
    from skimage import data

    return detect_face(data.astronaut(), source_name='astronaut.png').landmarks


def test_astronaut_ratios_plausible(lm):
    eyes = R.eye_close_ratio(lm)
    lip = R.lip_close_ratio(lm)
    assert eyes.shape == (2,) and lip.shape == (1,) and eyes.dtype == np.float32
    # Open eyes: the reference's open-eye values run 0.25-0.57.
    assert np.all((eyes > 0.2) & (eyes < 0.6))
    assert abs(eyes[0] - eyes[1]) < 0.1
    # She smiles showing teeth: lips apart, well above the 0.03 "closed" threshold, not gaping.
    assert 0.05 < lip[0] < 0.4


def _move(lm, idx, dy):
    out = lm.copy()
    out[idx, 1] += dy
    return out


def test_lip_ratio_follows_lip_motion(lm):
    base = R.lip_close_ratio(lm)[0]
    wider = R.lip_close_ratio(_move(_move(lm, 13, -5), 14, +5))[0]
    half = lm.copy()
    half[14] = (lm[13] + lm[14]) / 2  # lower lip half way up
    shut = lm.copy()
    shut[14] = lm[13]  # lower lip onto the upper one
    assert wider > base + 0.05
    assert abs(R.lip_close_ratio(half)[0] - base / 2) < 1e-4
    assert R.lip_close_ratio(shut)[0] < 1e-6 < 0.03 < base


def test_eye_ratio_follows_lid_motion(lm):
    base = R.eye_close_ratio(lm)
    shut = lm.copy()
    shut[159] = lm[145]  # image-left upper lid down
    left_shut = R.eye_close_ratio(shut)
    assert left_shut[0] < 1e-6 and left_shut[1] == base[1]
    right_wide = R.eye_close_ratio(_move(lm, 386, -3))
    assert right_wide[1] > base[1] and right_wide[0] == base[0]


def test_invariant_and_batched(lm):
    theta = np.radians(25)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = (lm @ rot.T) * 2.7 + np.array([40.0, -13.0])
    assert np.allclose(R.eye_close_ratio(moved), R.eye_close_ratio(lm), atol=1e-5)
    assert np.allclose(R.lip_close_ratio(moved), R.lip_close_ratio(lm), atol=1e-5)
    batch = np.stack([lm, moved, lm])
    assert R.eye_close_ratio(batch).shape == (3, 2)
    assert R.lip_close_ratio(batch).shape == (3, 1)
    assert R.combined_eye_ratio(lm, 0.3).shape == (1, 3)
    assert R.combined_lip_ratio(lm, 0.0).shape == (1, 2)
    with pytest.raises(ValueError, match='478'):
        R.eye_close_ratio(np.zeros((68, 2)))
