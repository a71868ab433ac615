"""Input/output plumbing of the stitching and retargeting MLPs (the MLPs are in models/stitching.py)."""

import jax.numpy as jnp


def concat_feat(kp_source, other):
    """(B, K, 3) source keypoints and (B, ...) features -> (B, 3K + prod(...)) MLP input."""
    bs = kp_source.shape[0]
    if other.shape[0] != bs:
        raise ValueError(
            f'batch sizes differ: {bs} source keypoint sets, {other.shape[0]} other inputs'
        )
    return jnp.concatenate([kp_source.reshape(bs, -1), other.reshape(bs, -1)], axis=1)


def apply_stitching_delta(kp_driving, delta):
    """Adds a stitching delta (B, 3K + 2) to driving keypoints (B, K, 3).

    The first 3K values move each keypoint; the last two shift every keypoint's (x, y).
    """
    kp_driving, delta = jnp.asarray(kp_driving), jnp.asarray(delta)
    bs, num_kp = kp_driving.shape[:2]
    delta_exp = delta[:, : 3 * num_kp].reshape(bs, num_kp, 3)
    delta_txty = delta[:, 3 * num_kp : 3 * num_kp + 2].reshape(bs, 1, 2)
    out = kp_driving + delta_exp
    return out.at[..., :2].add(delta_txty)
