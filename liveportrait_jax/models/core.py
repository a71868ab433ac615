"""The functional core: pure, jit-friendly functions over the networks, the one place where the
networks are composed.

The public facade (api.LivePortraitModels), the pipeline's fused chunk functions
(pipeline/kernels.py), portrait editing and the training objectives all call these. Each takes the
NNX modules it needs as arguments. Layouts are channels-last: images (B, H, W, 3); feature volumes
(B, D, H, W, C); keypoints (B, K, 3). Keypoint math, sampling coordinates and the S MLPs stay
float32; `dtype` is the compute dtype of the convolutions.
"""

import jax
import jax.numpy as jnp

from liveportrait_jax.ops.keypoints import get_rotation_matrix, refine_kp_info, transform_keypoints
from liveportrait_jax.ops.stitching import apply_stitching_delta, concat_feat


def to_model_input(images, size, dtype):
    """(B, H, W, 3) uint8 in [0, 255] or float in [0, 1] -> (B, size, size, 3) in [0, 1], `dtype`.

    Other sizes are resized bilinearly (jax.image.resize 'linear', the reference's F.interpolate).
    """
    x = images.astype(jnp.float32)
    if jnp.issubdtype(images.dtype, jnp.integer):
        x = x / 255.0
    if x.shape[1:3] != (size, size):
        x = jax.image.resize(x, (x.shape[0], size, size, 3), 'linear')
    return jnp.clip(x, 0.0, 1.0).astype(dtype)


def to_uint8(images):
    """[0, 1] floats -> uint8 the way the reference does it (clip, * 255, truncate)."""
    return (jnp.clip(images, 0.0, 1.0) * 255.0).astype(jnp.uint8)


def kp_info(m, x):
    """M + refinement: x (B, S, S, 3) model input -> pitch, yaw, roll (B, 1) degrees; t (B, 3);
    exp, kp (B, K, 3); scale (B, 1)."""
    return refine_kp_info(m(x))


def motion_info(m, x):
    """kp_info plus the rotation R (B, 3, 3) and the transformed keypoints x_s (B, K, 3)."""
    info = kp_info(m, x)
    info['R'] = get_rotation_matrix(info['pitch'], info['yaw'], info['roll'])
    info['x_s'] = transform_keypoints(info, rotation=info['R'])
    return info


def warp(w, f_s, x_s, x_d, dtype):
    """W: f_s (B, D, H, W, C), x_s, x_d (B, K, 3) -> dict out (warped feature), occlusion_map,
    deformation, mask (see WarpingNetwork)."""
    return w(f_s.astype(dtype), x_d, x_s)


def decode(g, feature, dtype):
    """G: warped feature (B, h, w, C) -> image (B, H, W, 3) in [0, 1]."""
    return g(feature.astype(dtype))


def warp_decode(w, g, f_s, x_s, x_d, dtype):
    """W + G: the animated image (B, H, W, 3) in [0, 1] for source f_s, x_s and driving x_d."""
    return decode(g, warp(w, f_s, x_s, x_d, dtype)['out'], dtype)


def stitching_delta(s, x_s, x_d):
    """S raw output (B, 3K + 2): keypoint offsets and a shared (tx, ty)."""
    return s(concat_feat(x_s, x_d)).astype(jnp.float32)


def stitch(s, x_s, x_d):
    """S: stitched driving keypoints (B, K, 3)."""
    return apply_stitching_delta(x_d, stitching_delta(s, x_s, x_d))


def retarget(mlp, x_s, ratio):
    """R_eyes (ratio (B, 3) = [c_s_eye_left, c_s_eye_right, c_d_eye]) or R_lip (ratio (B, 2) =
    [c_s_lip, c_d_lip]): keypoint offsets (B, K, 3)."""
    return mlp(concat_feat(x_s, ratio)).astype(jnp.float32).reshape(x_s.shape)
