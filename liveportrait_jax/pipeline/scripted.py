"""Driving by a motion script (motion_script.py): keyframed edits of the source's own motion.

A script alone drives the source with the image editor's rule (editing.py) frame by frame:

    R_new = R(pitch_s + d_pitch, yaw_s + d_yaw, roll_s + d_roll)
    x_d   = scale_s * mov_z * (kp_s @ R_new + exp_s + delta_exp) + [t_x, t_y, 0]
    x_d  += R_eyes / R_lip offsets towards the script's eye_open / lip_open, where it sets them
    x_d   = S(x_s, x_d)   (stitching, as the options say)

so a neutral keyframe gives exactly the editor's neutral result, and a keyframe saved from the
editor's sliders reproduces that edit. On top of a driving video (`--motion-script`), the same
edits modify the composed driving motion (motion.compose_raw's `edits`): the rotation delta
before the driving rotation (x @ R(d) @ R_new), the expression delta added, the scale multiplied.
"""

import numpy as np

from liveportrait_jax.ops.keypoints import get_rotation_matrix, transform_keypoints
from liveportrait_jax.pipeline.compose import script_openness


def script_edits(script, n, fps, num_kp):
    """The script's edits for n output frames at `fps`: frame i takes the script frame nearest to
    time i / fps (past the script's end, its last frame). Returns dict angles (n, 3) degrees,
    R (n, 3, 3) their rotation, exp (n, K, 3), mov_z (n,), eye_ratio / lip_ratio (n,) or None."""
    edits = script.edit_arrays(num_kp)
    idx = np.round(np.arange(n) * (script.fps / (fps or script.fps))).astype(np.int64)
    idx = np.minimum(idx, script.n_frames - 1)
    out = {k: None if v is None else np.asarray(v, np.float32)[idx] for k, v in edits.items()}
    a = out['angles']
    out['R'] = np.asarray(get_rotation_matrix(a[:, 0], a[:, 1], a[:, 2]), np.float32)
    return out


def script_keypoints(models, src, x_s, options, edits, *, src_eye=None, src_lip=None):
    """x_d (N, K, 3) of a script alone (the module docstring's rule).

    src: the source's motion for N output frames (pitch, yaw, roll (N, 1) degrees; kp, exp
    (N, K, 3); t (N, 3); scale (N, 1)), rows repeated for an image source; x_s (1 or N, K, 3);
    edits: script_edits(...) for N frames; src_eye (S, 2) / src_lip (S, 1) ratios or None.
    """
    n = edits['exp'].shape[0]
    angles = np.concatenate([np.reshape(src[k], (n, 1)) for k in ('pitch', 'yaw', 'roll')], 1)
    angles = angles + edits['angles']
    R_new = get_rotation_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
    edited = {
        'kp': src['kp'],
        'exp': src['exp'] + edits['exp'],
        'scale': np.reshape(src['scale'], (n, 1)) * edits['mov_z'][:, None],
        't': src['t'],
    }
    x_d = np.asarray(transform_keypoints(edited, rotation=R_new), np.float32)
    x_s = np.broadcast_to(x_s, x_d.shape)
    x_d = x_d + script_openness(models, x_s, src_eye, src_lip, edits, n)
    if options.flag_stitching:
        x_d = np.asarray(models.stitching(x_s, x_d), np.float32)
    return x_d
