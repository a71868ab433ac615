"""Keypoint math of LivePortrait: head-pose bins, rotations, implicit keypoint transform, heatmaps.

All functions are batched over the leading axis and jit-friendly. Angles are in degrees.
"""

import jax
import jax.numpy as jnp
import numpy as np

NUM_BINS = 66


def matmul(a, b):
    """a @ b in float32 on every backend. JAX's default on GPUs is TensorFloat-32 (10 mantissa
    bits), which moved rotations by 3e-4 on an H100; the keypoint math is tiny, so it stays exact."""
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def headpose_pred_to_degree(pred):
    """Head-pose logits (B, 66) -> degrees (B,): softmax expectation over bins, 3 degrees a bin.

    Inputs that are not (B, 66) are taken to be degrees already and returned unchanged, as the
    reference does, so the function can be applied twice.
    """
    if pred.ndim > 1 and pred.shape[1] == NUM_BINS:
        prob = jax.nn.softmax(pred.astype(jnp.float32), axis=1)
        idx = jnp.arange(NUM_BINS, dtype=jnp.float32)
        return jnp.sum(prob * idx, axis=1) * 3.0 - 97.5
    return pred


def refine_kp_info(raw):
    """Raw motion-extractor heads -> kp info: pitch/yaw/roll logits (B, 66) become degrees (B, 1);
    kp and exp (B, 3K) become (B, K, 3); t (B, 3) and scale (B, 1) pass through."""
    bs = raw['kp'].shape[0]
    out = dict(raw)
    for k in ('pitch', 'yaw', 'roll'):
        out[k] = headpose_pred_to_degree(raw[k])[:, None]
    out['kp'] = raw['kp'].reshape(bs, -1, 3)
    out['exp'] = raw['exp'].reshape(bs, -1, 3)
    return out


def get_rotation_matrix(pitch, yaw, roll):
    """Euler angles in degrees, each (B,) or (B, 1) -> R = (Rz(roll) Ry(yaw) Rx(pitch))^T, (B, 3, 3).

    The transpose makes keypoints rotate as row vectors: x_rot = x @ R.
    """
    x = jnp.reshape(pitch, (-1,)) / 180.0 * np.pi
    y = jnp.reshape(yaw, (-1,)) / 180.0 * np.pi
    z = jnp.reshape(roll, (-1,)) / 180.0 * np.pi
    one, zero = jnp.ones_like(x), jnp.zeros_like(x)
    rot_x = jnp.stack(
        [one, zero, zero, zero, jnp.cos(x), -jnp.sin(x), zero, jnp.sin(x), jnp.cos(x)], axis=1
    ).reshape(-1, 3, 3)
    rot_y = jnp.stack(
        [jnp.cos(y), zero, jnp.sin(y), zero, one, zero, -jnp.sin(y), zero, jnp.cos(y)], axis=1
    ).reshape(-1, 3, 3)
    rot_z = jnp.stack(
        [jnp.cos(z), -jnp.sin(z), zero, jnp.sin(z), jnp.cos(z), zero, zero, zero, one], axis=1
    ).reshape(-1, 3, 3)
    rot = matmul(matmul(rot_z, rot_y), rot_x)
    return jnp.swapaxes(rot, 1, 2)


def transform_keypoints(kp_info, rotation=None):
    """Implicit keypoints in image space: x = scale * (kp @ R + exp) + [tx, ty, 0]  (paper eq. 2).

    Args:
      kp_info: dict with 'kp' (B, K, 3) or (B, 3K); 'exp' likewise; 'pitch', 'yaw', 'roll' in degrees
        (B,) / (B, 1) or as 66-bin logits; 't' (B, 3); 'scale' (B, 1).
      rotation: optional precomputed (B, 3, 3) rotation, used instead of the angles.

    Returns:
      (B, K, 3) transformed keypoints. t_z is ignored, as in the reference.
    """
    kp = jnp.asarray(kp_info['kp'])
    bs = kp.shape[0]
    kp = kp.reshape(bs, -1, 3)
    exp = jnp.asarray(kp_info['exp']).reshape(bs, -1, 3)
    if rotation is None:
        rotation = get_rotation_matrix(
            headpose_pred_to_degree(kp_info['pitch']),
            headpose_pred_to_degree(kp_info['yaw']),
            headpose_pred_to_degree(kp_info['roll']),
        )
    out = matmul(kp, rotation) + exp
    out = out * jnp.asarray(kp_info['scale']).reshape(bs, 1, 1)
    t = jnp.asarray(kp_info['t']).reshape(bs, 3)
    return out.at[:, :, 0:2].add(t[:, None, 0:2])


def make_coordinate_grid(spatial_size, dtype=jnp.float32):
    """(d, h, w) -> (d, h, w, 3) grid of (x, y, z) in [-1, 1], 2*i/(n-1)-1 along each axis."""
    d, h, w = spatial_size

    def axis(n):
        return 2.0 * (jnp.arange(n, dtype=dtype) / (n - 1)) - 1.0

    zz, yy, xx = jnp.meshgrid(axis(d), axis(h), axis(w), indexing='ij')
    return jnp.stack([xx, yy, zz], axis=-1)


def kp2gaussian(kp, spatial_size, kp_variance):
    """Keypoints (B, K, 3) -> Gaussian heatmaps (B, d, h, w, K), channels-last.

    exp(-0.5 * |grid - kp|^2 / variance) on the coordinate grid of `spatial_size` = (d, h, w).
    """
    grid = make_coordinate_grid(spatial_size, dtype=kp.dtype)  # (d, h, w, 3)
    diff = grid[None, :, :, :, None, :] - kp[:, None, None, None, :, :]
    return jnp.exp(-0.5 * jnp.sum(diff**2, axis=-1) / kp_variance)
