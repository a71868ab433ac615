"""Keypoint math against direct numpy transcriptions of the reference formulas."""

import numpy as np

import liveportrait_jax as lp
from liveportrait_jax.ops.keypoints import headpose_pred_to_degree, kp2gaussian
from liveportrait_jax.ops.stitching import apply_stitching_delta


def np_rotation(pitch, yaw, roll):
    p, y, r = np.radians([pitch, yaw, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return (rz @ ry @ rx).T


def test_rotation_matches_formula_and_is_orthonormal():
    rng = np.random.default_rng(0)
    angles = rng.uniform(-90, 90, size=(5, 3)).astype(np.float32)
    rot = np.asarray(lp.get_rotation_matrix(angles[:, 0], angles[:, 1:2], angles[:, 2]))
    for i, (p, y, r) in enumerate(angles):
        np.testing.assert_allclose(rot[i], np_rotation(p, y, r), atol=1e-6)
        np.testing.assert_allclose(rot[i] @ rot[i].T, np.eye(3), atol=1e-6)
        np.testing.assert_allclose(np.linalg.det(rot[i]), 1.0, atol=1e-6)


def test_headpose_bins_to_degrees():
    logits = np.full((2, 66), -1e4, np.float32)
    logits[0, 0] = 0.0  # all mass on bin 0 -> -97.5
    logits[1, 65] = 0.0  # bin 65 -> 65 * 3 - 97.5 = 97.5
    np.testing.assert_allclose(np.asarray(headpose_pred_to_degree(logits)), [-97.5, 97.5])
    uniform = np.zeros((1, 66), np.float32)  # mean bin 32.5 -> 0 degrees
    np.testing.assert_allclose(np.asarray(headpose_pred_to_degree(uniform)), [0.0], atol=1e-4)
    degrees = np.array([[12.0]], np.float32)  # already degrees: unchanged
    np.testing.assert_array_equal(np.asarray(headpose_pred_to_degree(degrees)), degrees)


def test_transform_keypoints_formula():
    rng = np.random.default_rng(1)
    b = 3
    info = {
        'kp': rng.normal(size=(b, 21, 3)).astype(np.float32),
        'exp': rng.normal(size=(b, 63)).astype(np.float32) * 0.1,
        'pitch': rng.uniform(-30, 30, (b, 1)).astype(np.float32),
        'yaw': rng.uniform(-30, 30, (b, 1)).astype(np.float32),
        'roll': rng.uniform(-30, 30, (b, 1)).astype(np.float32),
        't': rng.normal(size=(b, 3)).astype(np.float32),
        'scale': rng.uniform(0.5, 2, (b, 1)).astype(np.float32),
    }
    got = np.asarray(lp.transform_keypoints(info))
    for i in range(b):
        rot = np_rotation(info['pitch'][i, 0], info['yaw'][i, 0], info['roll'][i, 0])
        want = info['scale'][i, 0] * (info['kp'][i] @ rot + info['exp'][i].reshape(21, 3))
        want[:, :2] += info['t'][i, :2]  # t_z is not applied
        np.testing.assert_allclose(got[i], want, atol=1e-5)


def test_gaussian_heatmap_peaks_at_keypoint():
    kp = np.array([[[0.0, 0.0, 0.0], [1.0, -1.0, 1.0]]], np.float32)
    heat = np.asarray(kp2gaussian(kp, (5, 5, 5), 0.01))
    assert heat.shape == (1, 5, 5, 5, 2)
    assert heat[0, 2, 2, 2, 0] == 1.0 and heat[0, 4, 0, 4, 1] == 1.0  # (z, y, x) indexing
    # A neighbouring grid point is 0.5 away: exp(-0.5 * 0.25 / 0.01).
    np.testing.assert_allclose(heat[0, 2, 2, 3, 0], np.exp(-0.5 * 0.25 / 0.01), rtol=1e-5)


def test_stitching_delta_moves_keypoints_and_shifts_xy():
    x_d = np.zeros((1, 21, 3), np.float32)
    delta = np.zeros((1, 65), np.float32)
    delta[0, :63] = np.arange(63) * 0.01
    delta[0, 63:] = [1.0, -2.0]
    out = np.asarray(apply_stitching_delta(x_d, delta))
    want = (np.arange(63) * 0.01).reshape(21, 3)
    want[:, 0] += 1.0
    want[:, 1] -= 2.0
    np.testing.assert_allclose(out[0], want, atol=1e-6)
