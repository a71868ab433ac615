"""Portrait editing and video lip retargeting: the reference app's two "retargeting" panels.

Image editing (the reference's `execute_image_retargeting`). From the source's motion
(kp, exp, R = R(pitch, yaw, roll), scale, t) the edited driving keypoints are

    R_new = R_d R_s^T R_s,   R_d = R(pitch + d_pitch, yaw + d_yaw, roll + d_roll)
    x_d   = mov_z * scale * (kp @ R_new + exp + delta) + [t_x, t_y, 0]
    x_d  += R_eyes(x_s, [c_s_eyes, target eye ratio])   when the eye target differs from the source
    x_d  += R_lip(x_s, [c_s_lip, target lip ratio])     when the lip target differs from the source
    x_d   = S(x_s, x_d)                                 (stitching, on by default)

and the result is W + G of (f_s, x_s, x_d), pasted back into the image. `delta` holds the
expression sliders: each adds value * coefficient to fixed entries of the 21 x 3 expression
(smile, wink, eyebrow, eye gaze, four lip variations; mov_x / mov_y move keypoint 5). The table
`EXPRESSION_EDITS` lists, per slider, which keypoint and axis it moves and by how much, as the
reference's `update_delta_new_*` functions do. With every slider neutral x_d is exactly x_s.

One deliberate difference: the reference adds the full translation t (t_z included) in this path,
while its own keypoint transform and its animation pipeline drop t_z. Here t_z is dropped too, so
that neutral sliders reproduce the source (x_d = x_s); `keep_tz=True` restores the reference's sum.

Video lip retargeting (the reference's `execute_video_retargeting`): every frame of a source video
gets x_d,i = x_s,i + R_lip(x_s,i, [c_s_lip,i, target]), the offsets Kalman-smoothed over the frames,
then stitching, W + G and paste-back. "Keep the lips silent" instead sets the expression of every
frame to a neutral-lip expression (`lip_array`, the reference's lip_array.pkl) except the eye
keypoints; without a lip array it closes the lips with the lip-retargeting network (target 0).
"""

import dataclasses
import logging
import os
import time
from typing import Optional

import cv2
import numpy as np

from liveportrait_jax import faces
from liveportrait_jax.demo import output_label
from liveportrait_jax.io import InputError
from liveportrait_jax.ops.keypoints import get_rotation_matrix, transform_keypoints
from liveportrait_jax.pipeline import kernels
from liveportrait_jax.pipeline import motion as motion_lib
from liveportrait_jax.pipeline.chunks import Chunker
from liveportrait_jax.pipeline.inputs import crop_source
from liveportrait_jax.pipeline.options import EYES_IDX, AnimateOptions
from liveportrait_jax.pipeline.outputs import (
    Outputs,
    Sink,
    Stages,
    burn_label,
    comparison_panel,
    file_outputs,
    labelled,
    progress_bar,
    stem,
)
from liveportrait_jax.pipeline.plan import Plan, source_pass
from liveportrait_jax.pipeline.read import media_from_frames, open_media
from liveportrait_jax.pipeline.render import render_to
from liveportrait_jax.pipeline.sliders import (  # noqa: F401  (public: the editor's controls)
    EXPRESSION_EDITS,
    EXPRESSION_SLIDERS,
    POSE_SLIDERS,
    RATIO_RANGE,
    SLIDER_NAMES,
    SLIDERS,
    EditSliders,
    Slider,
    expression_delta,
)

log = logging.getLogger('liveportrait_jax')


EDIT_SOURCE_SCALE = 2.5  # the reference's default crop scale for image editing
_CROP = faces.crop.SOURCE_CROP  # the source crop defaults (faces.crop: their one home)
VIDEO_SOURCE_SCALE = _CROP.scale  # ... and for video retargeting
VIDEO_SMOOTH_VARIANCE = 3e-6  # ... and its Kalman observation variance there


def edit_keypoints(info, sliders, *, keep_tz=False):
    """Edited driving keypoints (B, K, 3), before eye/lip retargeting and stitching.

    info: the source's kp info (pitch, yaw, roll (B, 1) degrees; kp, exp (B, K, 3); t (B, 3);
    scale (B, 1)), numpy or jax. Neutral sliders give exactly transform_keypoints(info).
    """
    info = {
        k: np.asarray(info[k], np.float32)
        for k in ('pitch', 'yaw', 'roll', 'kp', 'exp', 't', 'scale')
    }
    R_s = np.asarray(get_rotation_matrix(info['pitch'], info['yaw'], info['roll']))
    if sliders.head_pitch or sliders.head_yaw or sliders.head_roll:
        R_d = np.asarray(
            get_rotation_matrix(
                info['pitch'] + np.float32(sliders.head_pitch),
                info['yaw'] + np.float32(sliders.head_yaw),
                info['roll'] + np.float32(sliders.head_roll),
            )
        )
        R_new = R_d @ np.swapaxes(R_s, 1, 2) @ R_s
    else:
        R_new = R_s
    num_kp = info['kp'].shape[1]
    edited = dict(
        info,
        exp=info['exp'] + expression_delta(sliders, num_kp)[None],
        scale=info['scale'] * np.float32(sliders.mov_z),
    )
    x_d = np.asarray(transform_keypoints(edited, rotation=R_new))
    if keep_tz:
        x_d = x_d.copy()
        x_d[:, :, 2] += info['t'][:, None, 2]
    return x_d


# --- image editing ------------------------------------------------------------------------------


@dataclasses.dataclass
class PreparedPortrait:
    """A source portrait cropped and run through F and M once, for any number of edits."""

    image: np.ndarray  # (H, W, 3) uint8, after the reference's resize (<= 1280, even sides)
    crop_256: np.ndarray  # (256, 256, 3) uint8
    M_c2o: Optional[np.ndarray]  # (3, 3) crop (dsize) -> image, None without cropping
    landmarks: Optional[np.ndarray]  # (478, 2) in crop pixels, None when no face was found
    info: dict  # kp info, numpy, leading axis 1
    x_s: np.ndarray  # (1, K, 3)
    f_s: object  # (1, D, H, W, C) feature volume (device array)
    dsize: int
    eye_ratio: Optional[np.ndarray]  # (1, 2) source eyes-open ratios (image-left, image-right)
    lip_ratio: Optional[np.ndarray]  # (1, 1) source lip-open ratio

    @property
    def source_eye_open(self):
        """The eye slider's starting value: the mean eye ratio rounded to 2 decimals (or None)."""
        return None if self.eye_ratio is None else round(float(self.eye_ratio.mean()), 2)

    @property
    def source_lip_open(self):
        return None if self.lip_ratio is None else round(float(self.lip_ratio[0, 0]), 2)


def prepare_portrait(
    models,
    image_rgb,
    *,
    scale=EDIT_SOURCE_SCALE,
    vx_ratio=_CROP.vx_ratio,
    vy_ratio=_CROP.vy_ratio,
    do_crop=True,
    dsize=_CROP.dsize,
    face_index=0,
    name='<image>',
):
    """Crops `image_rgb` ((H, W, 3) uint8 RGB) and extracts its feature volume and motion.

    Raises faces.NoFaceError (naming `name`) when cropping is on and no face is found.
    """
    options = AnimateOptions(
        scale=float(scale),
        vx_ratio=float(vx_ratio),
        vy_ratio=float(vy_ratio),
        flag_do_crop=bool(do_crop),
        dsize=int(dsize),
        face_index=int(face_index),
    )
    src = crop_source(image_rgb, options, name=name)
    crop = src.crop_256[None].astype(np.float32) / 255.0
    info = {k: np.asarray(v) for k, v in models.get_kp_info(crop).items()}
    x_s = np.asarray(transform_keypoints(info))
    f_s = models.extract_feature_3d(crop)
    lm = src.landmarks
    eye = lip = None
    if lm is not None:
        eye = faces.eye_close_ratio(lm[None]).astype(np.float32).reshape(1, 2)
        lip = faces.lip_close_ratio(lm[None]).astype(np.float32).reshape(1, 1)
    return PreparedPortrait(
        src.frame,
        src.crop_256,
        src.M_c2o,
        lm,
        info,
        x_s,
        f_s,
        int(dsize),
        eye,
        lip,
    )


@dataclasses.dataclass
class EditResult:
    crop: np.ndarray  # (dsize, dsize, 3) uint8 edited face crop
    pasted: np.ndarray  # (H, W, 3) uint8 pasted back into the image (the crop without cropping)
    x_d_edit: np.ndarray  # (1, K, 3) keypoints after the slider edits, before retargeting/stitching
    x_d: np.ndarray  # (1, K, 3) keypoints rendered


def _differs(target, source):
    # The reference retargets when the slider differs from the source's rounded ratio; a small
    # tolerance absorbs float noise from the browser (0.30000000000000004).
    return target is not None and (source is None or abs(target - source) > 1e-6)


def edit_keypoints_full(models, prepared, sliders, *, stitching=True, keep_tz=False):
    """(x_d_edit, x_d): the edited keypoints, then with eye/lip retargeting and stitching."""
    x_s = prepared.x_s
    x_edit = edit_keypoints(prepared.info, sliders, keep_tz=keep_tz)
    x_d = x_edit
    want_eye = _differs(sliders.eye_ratio, prepared.source_eye_open)
    want_lip = _differs(sliders.lip_ratio, prepared.source_lip_open)
    if (want_eye or want_lip) and prepared.landmarks is None:
        log.warning('eye/lip openness needs face landmarks (no face found): left unchanged')
        want_eye = want_lip = False
    if want_eye:
        ratio = np.concatenate([prepared.eye_ratio, [[sliders.eye_ratio]]], axis=1)
        x_d = x_d + np.asarray(models.retarget_eye(x_s, ratio.astype(np.float32)))
    if want_lip:
        ratio = np.concatenate([prepared.lip_ratio, [[sliders.lip_ratio]]], axis=1)
        x_d = x_d + np.asarray(models.retarget_lip(x_s, ratio.astype(np.float32)))
    if stitching:
        x_d = np.asarray(models.stitching(x_s, x_d))
    return x_edit, np.asarray(x_d, np.float32)


def _to_uint8(out):
    return (np.clip(np.asarray(out, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def _at_size(img, size):
    return img if img.shape[0] == size else cv2.resize(img, (size, size))


def render_edit(models, prepared, sliders=None, *, stitching=True, label=None, keep_tz=False):
    """Edits a prepared portrait; returns EditResult. label: text burned into the outputs
    (default: a warning for random weights; '' for none)."""
    sliders = sliders or EditSliders()
    label = output_label(models, label)
    x_edit, x_d = edit_keypoints_full(
        models, prepared, sliders, stitching=stitching, keep_tz=keep_tz
    )
    out = models.warp_decode(prepared.f_s, prepared.x_s, x_d)['out']
    crop = _at_size(_to_uint8(out[0]), prepared.dsize)
    if prepared.M_c2o is not None:
        pasted = faces.paste_back(
            crop, prepared.M_c2o, prepared.image, faces.make_paste_back_mask(prepared.dsize)
        )
    else:
        pasted = crop.copy()
    if label:
        crop, pasted = burn_label(crop, label), burn_label(pasted, label)
    return EditResult(crop, pasted, x_edit, x_d)


def edit_portrait(
    models,
    image_rgb,
    *,
    scale=EDIT_SOURCE_SCALE,
    vx_ratio=_CROP.vx_ratio,
    vy_ratio=_CROP.vy_ratio,
    do_crop=True,
    stitching=True,
    label=None,
    keep_tz=False,
    **sliders,
):
    """Edits a portrait with the reference's retargeting sliders.

    Args:
      image_rgb: (H, W, 3) uint8 RGB portrait.
      scale, vx_ratio, vy_ratio, do_crop: source crop (the reference's editing default scale 2.5).
      stitching: apply the stitching network (default on, as the reference's checkbox).
      **sliders: EditSliders fields: eye_ratio, lip_ratio (targets, None = unchanged), head_pitch,
        head_yaw, head_roll (degrees), mov_x, mov_y, mov_z, lip_variation_zero (pouting),
        lip_variation_one (pursing), lip_variation_two (grin), lip_variation_three (lip close <->
        open), smile, wink, eyebrow, eyeball_direction_x, eyeball_direction_y.

    Returns:
      (crop_rgb (dsize, dsize, 3), pasted_rgb (H, W, 3)) uint8; pasted_rgb is the crop when
      do_crop is False.
    """
    unknown = sorted(set(sliders) - {f.name for f in dataclasses.fields(EditSliders)})
    if unknown:
        raise TypeError(
            f'unknown sliders {unknown}; known: eye_ratio, lip_ratio, {", ".join(SLIDER_NAMES)}'
        )
    prepared = prepare_portrait(
        models, image_rgb, scale=scale, vx_ratio=vx_ratio, vy_ratio=vy_ratio, do_crop=do_crop
    )
    res = render_edit(
        models, prepared, EditSliders(**sliders), stitching=stitching, label=label, keep_tz=keep_tz
    )
    return res.crop, res.pasted


# --- video lip retargeting ----------------------------------------------------------------------


@dataclasses.dataclass
class VideoRetargetResult:
    crops: np.ndarray  # (N, dsize, dsize, 3) uint8 retargeted face crops
    frames: np.ndarray  # (N, H, W, 3) uint8 pasted back (the crops without cropping)
    concat: np.ndarray  # (N, h, w, 3) uint8 source crop | result
    x_d: np.ndarray  # (N, K, 3) rendered keypoints
    n_frames: int
    timings: dict


def video_lip_keypoints(
    models,
    motion,
    x_s,
    *,
    lip_ratio=None,
    silence=False,
    src_lip=None,
    lip_array=None,
    smooth_observation_variance=VIDEO_SMOOTH_VARIANCE,
    keep_tz=False,
    chunk=8,
):
    """Driving keypoints (N, K, 3) of video lip retargeting, before stitching.

    motion: the frames' motion (kp, R, exp, scale, t with a leading frame axis); x_s (N, K, 3);
    src_lip (N, 1): the frames' lip-open ratios (needed unless silence with a lip_array).
    """
    n = x_s.shape[0]
    if silence and lip_array is not None:
        lip_array = np.asarray(lip_array, np.float32).reshape(-1, 3)
        exp = np.repeat(lip_array[None], n, axis=0)
        eyes = list(EYES_IDX)
        exp[:, eyes] = np.asarray(motion['exp'])[:, eyes]
        t = np.asarray(motion['t'], np.float32)
        info = {'kp': motion['kp'], 'exp': exp, 'scale': motion['scale'], 't': t}
        x_d = np.array(transform_keypoints(info, rotation=np.asarray(motion['R'])))
        if keep_tz:
            x_d[:, :, 2] += t[:, None, 2]
        return x_d
    if src_lip is None:
        raise InputError('lip retargeting needs a face (landmarks) in every frame of the video')
    target = 0.0 if silence else lip_ratio
    if target is None:
        raise ValueError('give a target lip-open ratio (or silence=True)')
    ratio = np.concatenate(
        [np.asarray(src_lip, np.float32).reshape(n, 1), np.full((n, 1), target, np.float32)], axis=1
    )
    deltas = Chunker(chunk).map(
        lambda xs, r: kernels.retarget(models, 'lip', xs, r), [x_s, ratio], n
    )
    deltas = motion_lib.kalman_smooth(deltas.reshape(n, -1), smooth_observation_variance)
    return np.asarray(x_s, np.float32) + deltas.reshape(x_s.shape)


def _retarget(models, media, options, outputs_for, *, lip_ratio, silence, lip_array,
              smooth_observation_variance, keep_tz, chunk, progress):  # fmt: skip
    """Both passes of video lip retargeting over a read.Media source video."""
    stages = Stages()
    t0 = time.perf_counter()
    chunker = Chunker(chunk)
    update, close = progress_bar(media.n_frames, 'retargeting: motion (faces, M)', progress)
    try:
        src = source_pass(models, media, options, chunker, stages, progress=update)
    finally:
        close()
    n = src.n_frames
    with stages.host('keypoints (S)'):
        x_s = src.motion['x_s']
        x_d = video_lip_keypoints(
            models,
            src.motion,
            x_s,
            lip_ratio=lip_ratio,
            silence=silence,
            src_lip=src.lip,
            lip_array=lip_array,
            smooth_observation_variance=smooth_observation_variance,
            keep_tz=keep_tz,
            chunk=chunk,
        )
        # Stitching always, as the reference.
        x_d = chunker.map(lambda a, b: models.stitching(a, b), [x_s, x_d], n)
    plan = Plan(src, None, n, x_s, np.asarray(x_d, np.float32))
    outputs = outputs_for(plan, stages)
    render_to(
        models, plan, options, chunker, outputs, stages, progress=progress,
        desc='retargeting: render (W+G)',
    )  # fmt: skip
    stages.add('total', time.perf_counter() - t0)
    return plan, outputs, stages


def _video_options(scale, vx_ratio, vy_ratio, do_crop, dsize):
    return AnimateOptions(
        scale=float(scale),
        vx_ratio=float(vx_ratio),
        vy_ratio=float(vy_ratio),
        flag_do_crop=bool(do_crop),
        dsize=int(dsize),
    )


def retarget_video_frames(
    models,
    frames,
    *,
    lip_ratio=None,
    silence=False,
    scale=VIDEO_SOURCE_SCALE,
    vx_ratio=_CROP.vx_ratio,
    vy_ratio=_CROP.vy_ratio,
    do_crop=True,
    smooth_observation_variance=VIDEO_SMOOTH_VARIANCE,
    lip_array=None,
    chunk=8,
    label=None,
    progress=False,
    keep_tz=False,
    dsize=_CROP.dsize,
    name='<video>',
):
    """Lip retargeting of a source video, in memory.

    Args:
      frames: (N, H, W, 3) uint8 RGB (or a list of frames).
      lip_ratio: target lip-open ratio (0 closed to about 0.8), for every frame.
      silence: keep the lips silent instead (neutral lips from `lip_array`, (21, 3), with the eye
        keypoints of each frame; without a lip array the lips are closed by the lip network).
      scale, vx_ratio, vy_ratio, do_crop: source crop (defaults: faces.SOURCE_CROP, the reference's).
      smooth_observation_variance: Kalman smoothing of the lip offsets (larger: smoother).
      chunk: frames per device batch. label: as render_edit. progress: tqdm bars.
    """
    label = output_label(models, label)
    options = _video_options(scale, vx_ratio, vy_ratio, do_crop, dsize)
    media = media_from_frames(frames, name=name, is_video=True)

    def outputs_for(plan, stages):
        sinks = {
            'crops': Sink('crops', [], labelled(label, lambda it: it['crop']), stages),
            'frames': Sink('frames', [], labelled(label, lambda it: it['frame']), stages),
            'concat': Sink('concat', [], labelled(label, comparison_panel), stages),
        }
        return Outputs(sinks, stages)

    plan, outputs, stages = _retarget(
        models, media, options, outputs_for, lip_ratio=lip_ratio, silence=silence,
        lip_array=lip_array, smooth_observation_variance=smooth_observation_variance,
        keep_tz=keep_tz, chunk=chunk, progress=progress,
    )  # fmt: skip
    got = {k: np.stack(s.writer) for k, s in outputs.sinks.items()}
    return VideoRetargetResult(
        got['crops'], got['frames'], got['concat'], plan.x_d, plan.n_frames, stages.wall
    )


@dataclasses.dataclass
class VideoRetargetOutput:
    output: str  # <video>_retargeting.mp4 (pasted back)
    concat: str  # <video>_retargeting_concat.mp4 (source crop | result)
    n_frames: int
    fps: float
    timings: dict


def retarget_video(
    models,
    video_path,
    output_dir,
    *,
    max_frames=None,
    scale=VIDEO_SOURCE_SCALE,
    vx_ratio=_CROP.vx_ratio,
    vy_ratio=_CROP.vy_ratio,
    do_crop=True,
    dsize=_CROP.dsize,
    label=None,
    smooth_observation_variance=VIDEO_SMOOTH_VARIANCE,
    lip_ratio=None,
    silence=False,
    lip_array=None,
    chunk=8,
    progress=False,
    keep_tz=False,
):
    """Lip retargeting of the video file `video_path`, streamed (memory flat in its length);
    writes `<stem>_retargeting.mp4` and `<stem>_retargeting_concat.mp4` (with the source's audio)
    to `output_dir`. Arguments as retarget_video_frames.
    """
    media = open_media(video_path, max_frames=max_frames)
    if media.kind != 'video':
        raise InputError(f'{media.name!r}: video lip retargeting needs a video')
    label = output_label(models, label)
    options = _video_options(scale, vx_ratio, vy_ratio, do_crop, dsize)
    os.makedirs(output_dir, exist_ok=True)
    stem_ = stem(video_path)
    paths = {
        'output': os.path.join(output_dir, f'{stem_}_retargeting.mp4'),
        'concat': os.path.join(output_dir, f'{stem_}_retargeting_concat.mp4'),
        'gif': None,
    }
    audio = media.name if media.has_audio else None

    def outputs_for(plan, stages):
        return file_outputs(paths, media.fps, audio, label, stages, still=False)

    plan, _, stages = _retarget(
        models, media, options, outputs_for, lip_ratio=lip_ratio, silence=silence,
        lip_array=lip_array, smooth_observation_variance=smooth_observation_variance,
        keep_tz=keep_tz, chunk=chunk, progress=progress,
    )  # fmt: skip
    return VideoRetargetOutput(
        paths['output'], paths['concat'], plan.n_frames, media.fps, stages.wall
    )
