"""A direct, per-frame numpy transcription of the reference pipeline's keypoint rules.

Written from src/live_portrait_pipeline.py (KwaiVGI/LivePortrait), loop body for frame i, with the
S networks passed in as functions. Slow and literal on purpose: it is what the vectorised
liveportrait_jax.pipeline.motion is checked against.
"""

import numpy as np
from scipy.spatial import ConvexHull

LIP_IDX = [6, 12, 14, 17, 19, 20]
EYES_IDX = [11, 13, 15, 16, 18]
FULL_IDX = [1, 2, 6, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]


def _replace_full(delta, src):
    for idx in FULL_IDX:
        delta[idx, :] = src[idx, :]
    delta[3:5, 1] = src[3:5, 1]
    delta[5, 2] = src[5, 2]
    delta[8, 2] = src[8, 2]
    delta[9, 1:] = src[9, 1:]


def reference_keypoints(
    src,
    drv,
    x_s,
    o,
    *,
    src_video,
    drv_video,
    lip_array,
    smooth_exp=None,
    smooth_R=None,
    stitch=None,
    eye=None,
    lip=None,
    c_s_eyes=None,
    c_s_lip=None,
    c_d_eyes=None,
    c_d_lip=None,
):
    """src: dict of (S, ...) arrays; drv: dict of (N, ...) arrays; x_s (S, 21, 3); o: options."""
    n = drv['R'].shape[0]
    out = []
    x_d_0_new = motion_multiplier = None
    for i in range(n):
        s = i if src_video else 0
        x_c_s, R_s, exp_s = src['kp'][s], src['R'][s], src['exp'][s]
        scale_s, t_s, xs = src['scale'][s], src['t'][s], x_s[s]
        R_d_i, exp_d_i, scale_d_i, t_d_i = drv['R'][i], drv['exp'][i], drv['scale'][i], drv['t'][i]
        R_d_0, exp_d_0, scale_d_0, t_d_0 = drv['R'][0], drv['exp'][0], drv['scale'][0], drv['t'][0]
        region = o.animation_region
        delta_new = exp_s.copy()
        if o.flag_relative_motion:
            if region in ('all', 'pose'):
                R_new = smooth_R[i] if src_video else (R_d_i @ R_d_0.T) @ R_s
            else:
                R_new = R_s
            if region in ('all', 'exp'):
                if src_video:
                    _replace_full(delta_new, smooth_exp[i])
                elif drv_video:
                    delta_new = exp_s + (exp_d_i - exp_d_0)
                else:
                    delta_new = exp_s + (exp_d_i - lip_array)
            elif region == 'lip':
                for idx in LIP_IDX:
                    if src_video:
                        delta_new[idx] = smooth_exp[i][idx]
                    elif drv_video:
                        delta_new[idx] = (exp_s + (exp_d_i - exp_d_0))[idx]
                    else:
                        delta_new[idx] = (exp_s + (exp_d_i - lip_array))[idx]
            elif region == 'eyes':
                for idx in EYES_IDX:
                    if src_video:
                        delta_new[idx] = smooth_exp[i][idx]
                    elif drv_video:
                        delta_new[idx] = (exp_s + (exp_d_i - exp_d_0))[idx]
                    else:
                        delta_new[idx] = (exp_s + (exp_d_i - 0))[idx]
            if region == 'all':
                scale_new = scale_s if src_video else scale_s * (scale_d_i / scale_d_0)
            else:
                scale_new = scale_s
            if region in ('all', 'pose'):
                t_new = t_s if src_video else t_s + (t_d_i - t_d_0)
            else:
                t_new = t_s
        else:
            R_new = (smooth_R[i] if src_video else R_d_i) if region in ('all', 'pose') else R_s
            if region in ('all', 'exp'):
                _replace_full(delta_new, smooth_exp[i] if src_video else exp_d_i)
            elif region == 'lip':
                for idx in LIP_IDX:
                    delta_new[idx] = (smooth_exp[i] if src_video else exp_d_i)[idx]
            elif region == 'eyes':
                for idx in EYES_IDX:
                    delta_new[idx] = (smooth_exp[i] if src_video else exp_d_i)[idx]
            scale_new = scale_s
            t_new = t_d_i if region in ('all', 'pose') else t_s
        t_new = t_new.copy()
        t_new[2] = 0
        x = scale_new * (x_c_s @ R_new + delta_new) + t_new
        if (
            o.flag_relative_motion
            and o.driving_option == 'expression-friendly'
            and not src_video
            and drv_video
        ):
            if i == 0:
                x_d_0_new = x
                motion_multiplier = np.sqrt(ConvexHull(xs).volume) / np.sqrt(
                    ConvexHull(x_d_0_new).volume
                )
            x = (x - x_d_0_new) * motion_multiplier + xs
        lip_before = None
        if o.flag_normalize_lip and o.flag_relative_motion and c_s_lip is not None:
            if c_s_lip[s][0] >= o.lip_normalize_threshold:
                lip_before = lip(xs, np.array([c_s_lip[s][0], 0.0]))
        eye_before = None
        if o.flag_source_video_eye_retargeting and src_video and c_s_eyes is not None:
            c0 = c_s_eyes[0][:2].mean()
            if c0 < o.source_video_eye_retargeting_threshold:
                c0 = 0.39
            eye_before = eye(xs, np.array([c_s_eyes[s][0], c_s_eyes[s][1], c0]))
        if not o.flag_stitching and not o.flag_eye_retargeting and not o.flag_lip_retargeting:
            if lip_before is not None:
                x = x + lip_before
            if eye_before is not None:
                x = x + eye_before
        elif o.flag_stitching and not o.flag_eye_retargeting and not o.flag_lip_retargeting:
            x = stitch(xs, x) + (lip_before if lip_before is not None else 0)
            if eye_before is not None:
                x = x + eye_before
        else:
            eyes_delta = lip_delta = 0
            if o.flag_eye_retargeting:
                eyes_delta = eye(xs, np.array([c_s_eyes[s][0], c_s_eyes[s][1], c_d_eyes[i][0]]))
                eyes_delta = eyes_delta * o.eyes_retargeting_multiplier
            if o.flag_lip_retargeting:
                lip_delta = lip(xs, np.array([c_s_lip[s][0], c_d_lip[i][0]]))
                lip_delta = lip_delta * o.lip_retargeting_multiplier
            x = (xs if o.flag_relative_motion else x) + eyes_delta + lip_delta
            if o.flag_stitching:
                x = stitch(xs, x)
        x = xs + (x - xs) * o.driving_multiplier
        out.append(x)
    return np.stack(out)
