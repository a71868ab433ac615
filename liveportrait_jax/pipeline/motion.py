"""Driving-keypoint composition of the reference pipeline, vectorised over frames.

For every driving frame i the reference builds the driving keypoints
    x_d,i = scale_new * (x_c,s @ R_new + exp_new) + t_new          (t_new with t_z = 0)
from the source's and the driving frame's motion, by rules that depend on relative/absolute motion,
the animation region, and whether source and driving are videos (see `compose_raw`). Then
expression-friendly driving rescales the motion around x_s, stitching and eye/lip retargeting adjust
it, and driving_multiplier scales the result (see `finalize`). Here every rule is applied to all
frames at once (arrays with a leading frame axis) instead of in a Python loop over frames.

Shapes: N frames, K = 21 keypoints. Source arrays have a leading axis of 1 (image) or N (video).
"""

import jax.numpy as jnp
import numpy as np

from liveportrait_jax.ops.keypoints import matmul
from liveportrait_jax.pipeline.options import EXP_FULL_IDX, EYES_IDX, LIP_IDX


def _index_mask(k=21):
    """(K, 3) masks of the expression entries the reference replaces per region."""
    full = np.zeros((k, 3), bool)
    full[list(EXP_FULL_IDX), :] = True
    full[3:5, 1] = True
    full[5, 2] = True
    full[8, 2] = True
    full[9, 1:] = True
    lip = np.zeros((k, 3), bool)
    lip[list(LIP_IDX), :] = True
    eyes = np.zeros((k, 3), bool)
    eyes[list(EYES_IDX), :] = True
    return {'exp': full, 'all': full, 'lip': lip, 'eyes': eyes}


def compose_raw(
    src, drv, *, relative, region, source_is_video, driving_is_video, lip_array=None, smoothed=None,
    edits=None,
):  # fmt: skip
    """Driving keypoints before expression-friendly scaling, stitching and retargeting.

    Args:
      src: dict kp (S, K, 3) canonical keypoints, R (S, 3, 3), exp (S, K, 3), scale (S, 1),
        t (S, 3); S = 1 for an image source, N for a video source.
      drv: dict R (N, 3, 3), exp (N, K, 3), scale (N, 1), t (N, 3); frame 0 is the reference frame
        of relative motion. For a driving image N is the number of output frames (1, or the
        source video's length) and every row is the image's motion.
      relative: relative (True) or absolute (False) motion.
      region: animation region, one of 'exp', 'pose', 'lip', 'eyes', 'all'.
      source_is_video, driving_is_video: input kinds, as the reference distinguishes them.
      lip_array: (K, 3) neutral-lip expression, subtracted for a driving image in relative mode.
      smoothed: for a video source, dict exp (N, K, 3) and R (N, 3, 3): the Kalman-smoothed
        composed expression and rotation (see `source_video_targets`).
      edits: a motion script's edits on top (pipeline/scripted.py), or None: dict R (N, 3, 3) the
        head-rotation delta, applied before the composed rotation (x @ R_delta @ R_new); exp
        (N, K, 3) added to the expression; mov_z (N,) multiplying the scale.

    Returns:
      (N, K, 3) driving keypoints.
    """
    n = drv['R'].shape[0]
    k = src['kp'].shape[1]
    exp_s = jnp.broadcast_to(src['exp'], (n, k, 3))
    R_s = jnp.broadcast_to(src['R'], (n, 3, 3))
    scale_s = jnp.broadcast_to(src['scale'], (n, 1))
    t_s = jnp.broadcast_to(src['t'], (n, 3))
    kp_s = jnp.broadcast_to(src['kp'], (n, k, 3))
    R_d, exp_d, scale_d, t_d = drv['R'], drv['exp'], drv['scale'], drv['t']
    pose = region in ('all', 'pose')
    masks = _index_mask(k)

    if relative:
        if source_is_video:
            exp_target = smoothed['exp']
        elif driving_is_video:
            exp_target = exp_s + (exp_d - exp_d[:1])
        else:
            exp_target = exp_s + (exp_d - (0.0 if region == 'eyes' else lip_array))
        if region in ('all', 'exp') and not source_is_video:
            exp_new = exp_target  # every entry moves
        elif region in masks:
            exp_new = jnp.where(masks[region], exp_target, exp_s)
        else:
            exp_new = exp_s
        if pose:
            R_new = (
                smoothed['R'] if source_is_video
                else matmul(matmul(R_d, jnp.swapaxes(R_d[:1], 1, 2)), R_s)
            )  # fmt: skip
            t_new = t_s if source_is_video else t_s + (t_d - t_d[:1])
        else:
            R_new, t_new = R_s, t_s
        scale_new = (
            scale_s * (scale_d / scale_d[:1])
            if region == 'all' and not source_is_video
            else scale_s
        )
    else:
        exp_target = smoothed['exp'] if source_is_video else exp_d
        exp_new = jnp.where(masks[region], exp_target, exp_s) if region in masks else exp_s
        if pose:
            R_new = smoothed['R'] if source_is_video else R_d
            t_new = t_d
        else:
            R_new, t_new = R_s, t_s
        scale_new = scale_s
    t_new = t_new.at[:, 2].set(0.0)
    if edits is not None:
        R_new = matmul(edits['R'], R_new)
        exp_new = exp_new + edits['exp']
        scale_new = scale_new * edits['mov_z'][:, None]
    return scale_new[:, :, None] * (matmul(kp_s, R_new) + exp_new) + t_new[:, None, :]


def convex_hull_volume(points):
    """Volume of the convex hull of (K, 3) points (scipy), as the reference's motion multiplier."""
    from scipy.spatial import ConvexHull

    return float(ConvexHull(np.asarray(points, np.float64)).volume)


def expression_friendly_multiplier(x_s, x_d_0):
    """sqrt(hull volume of x_s) / sqrt(hull volume of the first composed driving frame)."""
    return float(np.sqrt(convex_hull_volume(x_s)) / np.sqrt(convex_hull_volume(x_d_0)))


def kalman_smooth(observations, observation_variance=3e-7, process_variance=1e-5):
    """Rauch-Tung-Striebel smoothing of (N, D) observations, each dimension independently.

    The model the reference uses (pykalman with identity transition and observation matrices,
    isotropic noise, initial mean = first observation, initial covariance = identity); since every
    matrix is diagonal, each dimension is a scalar filter and all run at once.
    """
    y = np.asarray(observations, np.float64)
    n = y.shape[0]
    means = np.empty_like(y)
    covs = np.empty(n)
    pred_means = np.empty_like(y)
    pred_covs = np.empty(n)
    mean, cov = y[0], 1.0
    for i in range(n):
        if i > 0:
            mean, cov = means[i - 1], covs[i - 1] + process_variance
        pred_means[i], pred_covs[i] = mean, cov
        gain = cov / (cov + observation_variance)
        means[i] = mean + gain * (y[i] - mean)
        covs[i] = (1.0 - gain) * cov
    smoothed = means.copy()
    for i in range(n - 2, -1, -1):
        j = covs[i] / pred_covs[i + 1]
        smoothed[i] = means[i] + j * (smoothed[i + 1] - pred_means[i + 1])
    return smoothed.astype(np.float32)


def source_video_targets(
    src, drv, *, relative, pose, driving_is_video, observation_variance, lip_array=None
):
    """The expression and rotation targets of a video source (numpy, on host).

    Driving video: relative exp_s,i + exp_d,i - exp_d,0 and R_d,i R_d,0^T R_s,i, absolute exp_d,i and
    R_d,i, each Kalman-smoothed over the frames. Driving image (its row repeated): relative
    exp_s,i + exp_d - lip_array and R_s,i, absolute exp_d and R_d, not smoothed; as the reference.
    """
    exp_s, R_s = np.asarray(src['exp'], np.float32), np.asarray(src['R'], np.float32)
    exp_d, R_d = np.asarray(drv['exp'], np.float32), np.asarray(drv['R'], np.float32)
    n, k = exp_d.shape[0], exp_d.shape[1]
    if not driving_is_video:
        if relative:
            return {'exp': exp_s + (exp_d - lip_array), 'R': np.broadcast_to(R_s, (n, 3, 3))}
        return {'exp': exp_d, 'R': R_d}
    if relative:
        exp = exp_s + (exp_d - exp_d[:1])
        rot = R_d @ np.swapaxes(R_d[:1], 1, 2) @ R_s
    else:
        exp, rot = exp_d, R_d
    exp = kalman_smooth(exp.reshape(n, -1), observation_variance).reshape(n, k, 3)
    if pose:
        rot = kalman_smooth(rot.reshape(n, -1), observation_variance).reshape(n, 3, 3)
    return {'exp': exp, 'R': rot.astype(np.float32)}


def finalize(
    x_d,
    x_s,
    *,
    stitch_fn,
    eye_fn,
    lip_fn,
    options,
    multiplier=None,
    lip_delta_before=None,
    eye_delta_before=None,
    eye_ratio=None,
    lip_ratio=None,
):
    """Expression-friendly scaling, stitching, retargeting and driving_multiplier (reference order).

    Args:
      x_d: (N, K, 3) composed driving keypoints; x_s: (N or 1, K, 3) source keypoints.
      stitch_fn(x_s, x_d) -> stitched (N, K, 3); eye_fn(x_s, (N, 3)) / lip_fn(x_s, (N, 2)) ->
        offsets (N, K, 3): the S networks.
      options: AnimateOptions.
      multiplier: expression-friendly motion multiplier, or None when that mode is off.
      lip_delta_before, eye_delta_before: (N or 1, K, 3) normalisation offsets, or None.
      eye_ratio: (N, 3) [c_s_left, c_s_right, c_d]; lip_ratio: (N, 2) [c_s_lip, c_d_lip]; needed
        when eye / lip retargeting is on.
    """
    x_s = jnp.broadcast_to(x_s, x_d.shape)
    if multiplier is not None:
        x_d = (x_d - x_d[:1]) * multiplier + x_s
    retarget = options.flag_eye_retargeting or options.flag_lip_retargeting
    if not retarget:
        if options.flag_stitching:
            x_d = stitch_fn(x_s, x_d)
        if lip_delta_before is not None:
            x_d = x_d + lip_delta_before
        if eye_delta_before is not None:
            x_d = x_d + eye_delta_before
    else:
        offset = jnp.zeros_like(x_d)
        if options.flag_eye_retargeting and eye_ratio is not None:
            offset = offset + eye_fn(x_s, eye_ratio) * options.eyes_retargeting_multiplier
        if options.flag_lip_retargeting and lip_ratio is not None:
            offset = offset + lip_fn(x_s, lip_ratio) * options.lip_retargeting_multiplier
        x_d = (x_s if options.flag_relative_motion else x_d) + offset
        if options.flag_stitching:
            x_d = stitch_fn(x_s, x_d)
    return x_s + (x_d - x_s) * options.driving_multiplier
