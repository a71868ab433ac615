"""grid_sample_3d against slow, obviously-correct references (scipy and a Python loop)."""

import numpy as np
import pytest
from scipy import ndimage

from liveportrait_jax.ops.grid_sample import grid_sample_3d


def scipy_reference(volume, grid):
    """Per batch and channel, scipy's linear map_coordinates with zero ('grid-constant') padding.

    align_corners=False: normalised -1/1 are the outer edges of the corner voxels, so voxel index
    = ((g + 1) * size - 1) / 2.
    """
    b, d, h, w, c = volume.shape
    out = np.zeros(grid.shape[:-1] + (c,), np.float64)
    for i in range(b):
        gx, gy, gz = grid[i, ..., 0], grid[i, ..., 1], grid[i, ..., 2]
        coords = np.stack([((gz + 1) * d - 1) / 2, ((gy + 1) * h - 1) / 2, ((gx + 1) * w - 1) / 2])
        for ch in range(c):
            out[i, ..., ch] = ndimage.map_coordinates(
                volume[i, ..., ch].astype(np.float64),
                coords,
                order=1,
                mode='grid-constant',
                cval=0.0,
            )
    return out


def loop_reference(volume, point):
    """Trilinear sample of volume[0] at one normalised (x, y, z) point, written out by hand."""
    _, d, h, w, c = volume.shape
    x = ((point[0] + 1) * w - 1) / 2
    y = ((point[1] + 1) * h - 1) / 2
    z = ((point[2] + 1) * d - 1) / 2
    total = np.zeros(c)
    for zi in (int(np.floor(z)), int(np.floor(z)) + 1):
        for yi in (int(np.floor(y)), int(np.floor(y)) + 1):
            for xi in (int(np.floor(x)), int(np.floor(x)) + 1):
                weight = (1 - abs(x - xi)) * (1 - abs(y - yi)) * (1 - abs(z - zi))
                if 0 <= xi < w and 0 <= yi < h and 0 <= zi < d:
                    total += weight * volume[0, zi, yi, xi]
    return total


@pytest.fixture(scope='module')
def volume():
    rng = np.random.default_rng(0)
    return rng.normal(size=(2, 5, 6, 7, 3)).astype(np.float32)


def test_matches_scipy_inside_and_outside(volume):
    rng = np.random.default_rng(1)
    # Range -1.6..1.6 puts many points fully outside and many straddling the border.
    grid = rng.uniform(-1.6, 1.6, size=(2, 4, 5, 6, 3)).astype(np.float32)
    got = np.asarray(grid_sample_3d(volume, grid))
    want = scipy_reference(volume, grid)
    assert got.shape == (2, 4, 5, 6, 3)
    np.testing.assert_allclose(got, want, atol=1e-5)
    outside = np.any(np.abs(grid) > 1 + 2.0 / np.array([7, 6, 5]), axis=-1)
    assert outside.any() and np.all(got[outside] == 0)


def test_matches_loop_reference_on_special_points(volume):
    points = np.array(
        [
            [0.0, 0.0, 0.0],  # centre
            [-1.0, -1.0, -1.0],  # outer corner: a quarter/eighth of the corner voxel
            [1.0, 1.0, 1.0],
            [-1 + 1 / 7, -1 + 1 / 6, -1 + 1 / 5],  # exactly the first voxel's centre
            [0.99, -0.99, 0.5],
            [1.2, 0.0, 0.0],  # half a voxel outside in x: still partly inside
            [5.0, 5.0, 5.0],  # far outside
        ],
        np.float32,
    )
    grid = np.broadcast_to(points[None, :, None, None, :], (2, len(points), 1, 1, 3))
    got = np.asarray(grid_sample_3d(volume, grid))[0, :, 0, 0]
    for i, p in enumerate(points):
        np.testing.assert_allclose(got[i], loop_reference(volume, p), atol=1e-5, err_msg=str(p))
    np.testing.assert_allclose(got[3], volume[0, 0, 0, 0], atol=1e-5)
    np.testing.assert_array_equal(got[6], 0)


def test_identity_grid_reproduces_volume(volume):
    from liveportrait_jax.ops.keypoints import make_coordinate_grid

    # With align_corners=False the identity is the voxel-centre grid, not make_coordinate_grid.
    d, h, w = volume.shape[1:4]
    axes = [(2 * np.arange(n) + 1) / n - 1 for n in (d, h, w)]
    zz, yy, xx = np.meshgrid(*axes, indexing='ij')
    grid = np.broadcast_to(np.stack([xx, yy, zz], -1), (2, d, h, w, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(grid_sample_3d(volume, grid)), volume, atol=1e-5)
    # make_coordinate_grid spans corner centre to corner centre: same value at the first voxel.
    g = np.asarray(make_coordinate_grid((d, h, w)))
    assert g.shape == (d, h, w, 3)
    np.testing.assert_allclose(g[0, 0, 0], [-1, -1, -1])
    np.testing.assert_allclose(g[-1, -1, -1], [1, 1, 1])
    np.testing.assert_allclose(g[0, 0, 1, 0], -1 + 2 / (w - 1), rtol=1e-6)


def test_many_grids_share_one_volume(volume):
    """A (B, K, d, h, w, 3) grid samples K motions at once, as the dense motion network does."""
    rng = np.random.default_rng(2)
    grid = rng.uniform(-1, 1, size=(2, 3, 2, 2, 2, 3)).astype(np.float32)
    got = np.asarray(grid_sample_3d(volume, grid))
    assert got.shape == (2, 3, 2, 2, 2, 3)
    for k in range(3):
        np.testing.assert_allclose(
            got[:, k], np.asarray(grid_sample_3d(volume, grid[:, k])), atol=1e-6
        )
