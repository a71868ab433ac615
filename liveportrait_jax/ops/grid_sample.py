"""Trilinear 3D grid sampling with PyTorch `F.grid_sample` semantics.

Matches `torch.nn.functional.grid_sample(input, grid, mode='bilinear', padding_mode='zeros',
align_corners=False)` for 5-D inputs, but channels-last: the volume is (B, D, H, W, C) and the result is
(B, *grid_spatial, C). Written as eight gathers over a flattened volume so that one call can sample many
grids from the same volume (the dense motion network samples 22 motions of one feature volume) without
repeating the volume in memory.
"""

import jax.numpy as jnp


def _unnormalize(coord, size):
    # align_corners=False: -1 and 1 are the outer edges of the corner voxels, not their centres.
    return ((coord + 1.0) * size - 1.0) / 2.0


def grid_sample_3d(volume, grid):
    """Samples `volume` at `grid` with trilinear interpolation and zero padding.

    Args:
      volume: (B, D, H, W, C) values, channels-last.
      grid: (B, ..., 3) sampling locations in [-1, 1], last axis ordered (x, y, z) = (width, height,
        depth) as in PyTorch. Locations outside the volume read zeros from the missing neighbours.

    Returns:
      (B, ..., C) sampled values, in the promoted dtype of volume and grid weights.
    """
    b, d, h, w, c = volume.shape
    out_spatial = grid.shape[1:-1]
    grid = grid.reshape(b, -1, 3)
    ix = _unnormalize(grid[..., 0], w)
    iy = _unnormalize(grid[..., 1], h)
    iz = _unnormalize(grid[..., 2], d)
    x0, y0, z0 = jnp.floor(ix), jnp.floor(iy), jnp.floor(iz)
    fx, fy, fz = ix - x0, iy - y0, iz - z0
    x0, y0, z0 = x0.astype(jnp.int32), y0.astype(jnp.int32), z0.astype(jnp.int32)
    flat = volume.reshape(b, d * h * w, c)

    out = None
    for dz in (0, 1):
        zi = z0 + dz
        wz = fz if dz else 1.0 - fz
        for dy in (0, 1):
            yi = y0 + dy
            wy = fy if dy else 1.0 - fy
            for dx in (0, 1):
                xi = x0 + dx
                wx = fx if dx else 1.0 - fx
                inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h) & (zi >= 0) & (zi < d)
                idx = (jnp.clip(zi, 0, d - 1) * h + jnp.clip(yi, 0, h - 1)) * w + jnp.clip(
                    xi, 0, w - 1
                )
                vals = jnp.take_along_axis(flat, idx[..., None], axis=1)  # (B, N, C)
                weight = jnp.where(inside, wx * wy * wz, 0.0)
                term = vals * weight[..., None].astype(vals.dtype)
                out = term if out is None else out + term
    return out.reshape((b,) + tuple(out_spatial) + (c,))
