"""Stage "compose": the reference's rules from source and driving motion to driving keypoints.

`compose_keypoints` applies them to every output frame at once (small arrays: 63 floats a frame),
after the motion pass and before rendering; the rules themselves are in motion.py.
"""

import logging

import numpy as np

from liveportrait_jax.pipeline import kernels
from liveportrait_jax.pipeline import motion as motion_lib

log = logging.getLogger('liveportrait_jax')


def take(motion, n):
    """The first n frames of a motion dict; a single frame is repeated to n."""
    out = {}
    for k, v in motion.items():
        if v is None:
            out[k] = None
        elif len(v) == 1 and n > 1:
            out[k] = np.repeat(v, n, axis=0)
        else:
            out[k] = v[:n]
    return out


def compose_keypoints(
    models,
    src,
    drv,
    x_s,
    options,
    *,
    source_is_video,
    driving_is_video,
    src_eye=None,
    src_lip=None,
    drv_eye=None,
    drv_lip=None,
    lip_array=None,
    edits=None,
):
    """Driving keypoints (N, K, 3) for every output frame, by the reference's rules.

    src: motion dict of the source, leading axis 1 (image) or N (video); drv: the driving motion
    (N frames); x_s: (1 or N, K, 3); src_eye (S, 2), src_lip (S, 1): source ratios or None;
    drv_eye (N, 2), drv_lip (N, 1): driving ratios or None.
    edits: a motion script's edits on top of the driving motion (scripted.edits_on_top), or None.
    """
    n = drv['R'].shape[0]
    relative, region = options.flag_relative_motion, options.animation_region
    if lip_array is None:
        lip_array = src['exp'][0]
    smoothed = None
    if source_is_video:
        smoothed = motion_lib.source_video_targets(
            src,
            drv,
            relative=relative,
            pose=region in ('all', 'pose'),
            driving_is_video=driving_is_video,
            lip_array=lip_array,
            observation_variance=options.driving_smooth_observation_variance,
        )
    raw = kernels.compose_raw(
        {k: src[k] for k in ('kp', 'R', 'exp', 'scale', 't')},
        {k: drv[k] for k in ('R', 'exp', 'scale', 't')},
        smoothed,
        lip_array,
        None if edits is None else {k: edits[k] for k in ('R', 'exp', 'mov_z')},
        relative=relative,
        region=region,
        source_is_video=source_is_video,
        driving_is_video=driving_is_video,
    )
    multiplier = None
    if (
        relative
        and options.driving_option == 'expression-friendly'
        and not source_is_video
        and driving_is_video
    ):
        multiplier = motion_lib.expression_friendly_multiplier(x_s[0], np.asarray(raw[0]))

    have_src = src_eye is not None and src_lip is not None
    retarget = options.flag_eye_retargeting or options.flag_lip_retargeting
    lip_before = eye_before = eye_ratio = lip_ratio = None
    if not retarget and have_src:
        if options.flag_normalize_lip and relative:
            ratio = np.concatenate([src_lip, np.zeros_like(src_lip)], axis=1)
            keep = (src_lip[:, :1] >= options.lip_normalize_threshold)[:, :, None]
            lip_before = np.asarray(kernels.retarget(models, 'lip', x_s, ratio)) * keep
        if source_is_video and options.flag_source_video_eye_retargeting:
            c0 = float(src_eye[0].mean())
            if c0 < options.source_video_eye_retargeting_threshold:
                c0 = 0.39
            ratio = np.concatenate([src_eye, np.full((len(src_eye), 1), c0, np.float32)], axis=1)
            eye_before = np.asarray(kernels.retarget(models, 'eye', x_s, ratio))
    if retarget and have_src:
        if options.flag_eye_retargeting:
            if drv_eye is None:
                log.warning(
                    'eye retargeting needs driving eye ratios; the driving input has none '
                    '(template without c_eyes_lst?): skipped'
                )
            else:
                eye_ratio = np.concatenate(
                    [np.broadcast_to(src_eye, (n, 2)), drv_eye[:n, :1]], axis=1
                )
        if options.flag_lip_retargeting:
            if drv_lip is None:
                log.warning(
                    'lip retargeting needs driving lip ratios; the driving input has none: skipped'
                )
            else:
                lip_ratio = np.concatenate(
                    [np.broadcast_to(src_lip, (n, 1)), drv_lip[:n, :1]], axis=1
                )
    elif retarget:
        log.warning('eye/lip retargeting needs source landmarks (no face found): skipped')

    x_d = np.asarray(
        kernels.finalize(
            models,
            raw,
            x_s,
            options,
            None if multiplier is None else np.float32(multiplier),
            lip_before,
            eye_before,
            eye_ratio,
            lip_ratio,
        )
    )
    if edits is not None:
        x_d = x_d + script_openness(models, x_s, src_eye, src_lip, edits, n)
    return x_d


def script_openness(models, x_s, src_eye, src_lip, edits, n):
    """(N, K, 3) eye / lip retargeting offsets towards a script's eye_open / lip_open targets
    (zero where the script sets neither, or without source landmarks)."""
    offset = np.zeros((n,) + x_s.shape[1:], np.float32)
    for name, src_ratio, target in (
        ('eye', src_eye, edits.get('eye_ratio')),
        ('lip', src_lip, edits.get('lip_ratio')),
    ):
        if target is None:
            continue
        if src_ratio is None:
            log.warning('the script sets %s openness, which needs source landmarks: skipped', name)
            continue
        ratio = np.concatenate(
            [np.broadcast_to(src_ratio, (n, src_ratio.shape[1])), np.reshape(target, (n, 1))],
            axis=1,
        ).astype(np.float32)
        offset = offset + np.asarray(
            kernels.retarget(models, name, np.broadcast_to(x_s, offset.shape), ratio)
        )
    return offset
