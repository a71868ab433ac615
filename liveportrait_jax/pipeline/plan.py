"""The first pass: inputs -> motion (M) -> driving keypoints for every output frame.

The reference's rules need the whole motion sequence before the first frame is rendered (relative
motion from the first driving frame, the expression-friendly multiplier, Kalman smoothing of a
source video's motion, the driving video's mean crop box), so an animation takes two passes over
its videos. This one streams the frames through landmarks, crops and M and keeps only per-frame
motion parameters, crop matrices and eye/lip ratios (under 1 kB a frame); render.py streams them
again to render and write.
"""

import dataclasses
import functools
from typing import Optional

import numpy as np

from liveportrait_jax.pipeline import kernels
from liveportrait_jax.pipeline.compose import compose_keypoints, take
from liveportrait_jax.pipeline.inputs import (
    driving_geometry,
    driving_landmarks,
    iter_driving_crops,
    iter_source,
    needs_driving_crop,
    ratios,
    report_missing_faces,
    resize_256,
)
from liveportrait_jax.pipeline.read import DiskFrames, prefetch
from liveportrait_jax.pipeline.scripted import script_edits, script_keypoints

MOTION_KEYS = ('R', 'exp', 't', 'scale', 'kp', 'x_s')
SOURCE_KEYS = MOTION_KEYS + ('pitch', 'yaw', 'roll')  # the angles: a motion script edits them


@dataclasses.dataclass
class SourcePlan:
    """The source after the first pass (per-frame arrays have S rows; S = 1 for an image)."""

    media: object  # read.Media
    n_frames: int
    frame_hw: tuple  # (H, W) of the (resized) source frames
    motion: dict  # MOTION_KEYS -> (S, ...) float32
    M_o2c: Optional[np.ndarray]  # (S, 3, 3), None without cropping
    M_c2o: Optional[np.ndarray]
    eye: Optional[np.ndarray]  # (S, 2) open ratios, None without landmarks
    lip: Optional[np.ndarray]  # (S, 1)
    image: Optional[np.ndarray] = None  # (H, W, 3) an image source's frame (it stays in memory)
    crop_256: Optional[np.ndarray] = None  # (256, 256, 3) an image source's crop
    present: Optional[np.ndarray] = None  # (S,) bool: the face is in the frame (None: always)

    @property
    def is_video(self):
        return self.media.is_video


@dataclasses.dataclass
class DrivingPlan:
    media: object  # read.Media
    n_frames: int
    motion: dict  # MOTION_KEYS -> (N, ...) float32
    eye: Optional[np.ndarray]  # (N, 2) driving eye-open ratios, or None
    lip: Optional[np.ndarray]  # (N, 1)
    geometry: object = None  # inputs.DrivingGeometry when the frames are cropped
    crop_256: Optional[np.ndarray] = None  # a driving image's crop (for the comparison panel)
    crops: Optional[DiskFrames] = None  # a driving video's 256 crops, kept for the comparison

    @property
    def is_video(self):
        return self.media.is_video


@dataclasses.dataclass
class Plan:
    source: SourcePlan
    driving: DrivingPlan
    n_frames: int
    x_s: np.ndarray  # (1 or N, K, 3)
    x_d: np.ndarray  # (N, K, 3)


def _motion_of(models, chunker, rows, progress, keys=MOTION_KEYS):
    """M over a stream of rows whose first entry is a 256 crop; returns (motion, payload list)."""
    motion, payload = [], []
    fn = functools.partial(kernels.motion, models)
    for _, valid, out, extra in chunker.stream(fn, chunker.batches(rows, 1)):
        motion.append({k: out[k].astype(np.float32) for k in keys})
        payload.extend(zip(*extra) if extra else [()] * valid)
        progress(valid)
    if not motion:
        return None, payload
    return {k: np.concatenate([m[k] for m in motion]) for k in keys}, payload


def source_pass(
    models, media, options, chunker, stages, *, animals=False, limit=None, workers=None, progress,
    face=None,
):  # fmt: skip
    """Reads, crops and runs M on every source frame (faces in their own thread). face: one
    face of several (inputs.iter_source)."""
    first = {}

    def rows():
        for sf in iter_source(
            media, options, animals=animals, limit=limit, workers=workers, face=face
        ):
            if sf.index == 0:
                first['frame'], first['crop'] = sf.frame, sf.crop_256
            yield sf.crop_256, sf.M_o2c, sf.M_c2o, sf.landmarks, sf.present

    stream = prefetch(stages.timed(rows(), 'faces: source'), chunker.chunk)
    motion, extra = _motion_of(models, chunker, stream, progress, SOURCE_KEYS)
    n = len(extra)
    M_o2c = None if extra[0][0] is None else np.stack([e[0] for e in extra])
    M_c2o = None if extra[0][1] is None else np.stack([e[1] for e in extra])
    lms = [e[2] for e in extra]
    eye, lip = ratios(None if any(lm is None for lm in lms) else np.stack(lms))
    return SourcePlan(
        media,
        n,
        first['frame'].shape[:2],
        motion,
        M_o2c,
        M_c2o,
        eye,
        lip,
        image=None if media.is_video else first['frame'],
        crop_256=None if media.is_video else first['crop'],
        present=np.array([e[3] for e in extra], bool),
    )


def _kept(rows, disk):
    """Rows passed through, their first entry (the 256 crop) also appended to `disk` (or None)."""
    for row in rows:
        if disk is not None:
            disk.append(row[0])
        yield row


def driving_pass(
    models, media, options, chunker, stages, *, limit=None, workers=None, keep_crops=False, progress
):
    """Motion (and eye/lip ratios) of every driving frame; a template is read as it is.

    A driving video's 256 crops are kept on disk when `keep_crops` (the comparison video shows them).
    """
    if media.kind == 'script':  # no frames: it edits the source's own motion (scripted.py)
        return DrivingPlan(media, media.n_frames, None, None, None)
    if media.kind == 'template':
        t = media.template
        motion = {k: getattr(t, k) for k in MOTION_KEYS}
        n = media.n_frames if limit is None else min(limit, media.n_frames)  # max_frames applied
        eye, lip = t.c_eyes, t.c_lip
        return steady(DrivingPlan(media, n, take(motion, n), _cut(eye, n), _cut(lip, n)), options)
    w, h = media.size
    disk = DiskFrames() if keep_crops and media.is_video else None
    if needs_driving_crop(options, w, h):
        # Two reads: the boxes of every frame first (their mean is the crop box), then the crops.
        with stages.host('faces: driving'):
            geometry = driving_geometry(media, options, limit=limit, workers=workers)
        report_missing_faces(media.name, geometry.missing, geometry.n_frames)
        crops = ((c,) for c in iter_driving_crops(media, options, geometry, limit))
        stream = prefetch(stages.timed(_kept(crops, disk), 'crop: driving'), chunker.chunk)
        motion, _ = _motion_of(models, chunker, stream, progress)
        eye, lip = geometry.eye, geometry.lip
    else:
        # A square video is only resized: one read gives the crops and the landmarks.
        geometry = None
        lm_rows = (
            (resize_256(f), lm)
            for f, lm in driving_landmarks(media, options, limit=limit, workers=workers)
        )
        stream = prefetch(stages.timed(_kept(lm_rows, disk), 'faces: driving'), chunker.chunk)
        motion, extra = _motion_of(models, chunker, stream, progress)
        lms = [e[0] for e in extra]
        missing = sum(lm is None for lm in lms)
        first = next(lm for lm in lms if lm is not None)
        scale = 256.0 / np.array([w, h], np.float32)
        eye, lip = ratios(np.stack([first if lm is None else lm for lm in lms]) * scale)
        report_missing_faces(media.name, missing, len(lms))
    n = len(motion['R'])
    crop_256 = None
    if not media.is_video:
        crop_256 = next(iter(iter_driving_crops(media, options, geometry, 1)))
    return steady(DrivingPlan(media, n, motion, eye, lip, geometry, crop_256, disk), options)


def steady(plan, options):
    """The driving plan with its motion and eye/lip ratios smoothed over time as
    options.motion_smoothing says (smoothing.py); unchanged for 'none' or a single frame. What
    comes out is the motion used, and what `<driving>.pkl` holds."""
    if options.motion_smoothing == 'none' or plan.n_frames < 2:
        return plan
    from liveportrait_jax.pipeline import steady as smoothing

    method, strength = options.motion_smoothing, options.motion_smoothing_strength
    fps = plan.media.fps or options.output_fps

    def series(a):  # eye/lip openness: an expression, smoothed as the expression is
        share = smoothing.EXPRESSION_SHARE
        return None if a is None else smoothing.smooth_series(a, method, strength * share, fps)

    motion = smoothing.smooth_motion(plan.motion, method, strength, fps)
    return dataclasses.replace(plan, motion=motion, eye=series(plan.eye), lip=series(plan.lip))


def _cut(a, n):
    return None if a is None else take({'a': a}, n)['a']


def output_frames(source, driving):
    """How many frames the animation has (the reference's rule)."""
    if source.is_video and driving.is_video:
        return min(source.n_frames, driving.n_frames)
    if source.is_video:
        return source.n_frames
    return driving.n_frames


def source_limit(source_media, driving_media):
    """Frames of the source video that can be used (at most the driving video's, when both are
    videos): read no more than that."""
    if source_media.is_video and driving_media.is_video:
        return min(source_media.n_frames, driving_media.n_frames)
    return None


def plan_animation(
    models,
    source_media,
    driving_media,
    options,
    chunker,
    stages,
    *,
    animals=False,
    lip_array=None,
    workers=None,
    keep_driving_crops=False,
    progress=lambda n: None,
    source_progress=None,
    motion_script=None,
):
    """The first pass: motion of both inputs, then the driving keypoints of every output frame
    (motion_script: edits on top of the driving motion, see scripted.py). progress(n): n driving
    frames through M; source_progress(n) the same for source frames (default: progress)."""
    with stages.host('motion pass'):
        drv = driving_pass(
            models, driving_media, options, chunker, stages, workers=workers,
            keep_crops=keep_driving_crops, progress=progress,
        )  # fmt: skip
        src = source_pass(
            models,
            source_media,
            options,
            chunker,
            stages,
            animals=animals,
            limit=source_limit(source_media, driving_media),
            workers=workers,
            progress=progress if source_progress is None else source_progress,
        )
    return compose_plan(
        models, src, drv, options, stages, lip_array=lip_array, motion_script=motion_script
    )


def compose_plan(models, src, drv, options, stages, *, lip_array=None, n=None, motion_script=None):
    """The driving keypoints of every output frame (n: at most this many) from both passes;
    motion_script: a motion_script.MotionScript whose edits go on top of the driving motion."""
    n = output_frames(src, drv) if n is None else min(n, output_frames(src, drv))
    with stages.host('compose (keypoints, S)'):
        src_motion = take(src.motion, n) if src.is_video else src.motion
        x_s = src_motion['x_s']
        num_kp = x_s.shape[1]
        src_eye = None if src.eye is None else src.eye[:n] if src.is_video else src.eye
        src_lip = None if src.lip is None else src.lip[:n] if src.is_video else src.lip
        if drv.media.kind == 'script':
            edits = script_edits(drv.media.script, n, drv.media.fps, num_kp)
            x_d = script_keypoints(
                models, take(src.motion, n), x_s, options, edits, src_eye=src_eye, src_lip=src_lip
            )
            return Plan(src, drv, n, x_s, x_d)
        edits = None
        if motion_script is not None:
            edits = script_edits(motion_script, n, drv.media.fps or motion_script.fps, num_kp)
        x_d = compose_keypoints(
            models,
            src_motion,
            take(drv.motion, n),
            x_s,
            options,
            source_is_video=src.is_video,
            driving_is_video=drv.is_video,
            src_eye=src_eye,
            src_lip=src_lip,
            drv_eye=_cut(drv.eye, n),
            drv_lip=_cut(drv.lip, n),
            lip_array=None
            if lip_array is None
            else np.asarray(lip_array, np.float32).reshape(-1, 3),
            edits=edits,
        )
    return Plan(src, drv, n, x_s, x_d)


@dataclasses.dataclass
class FacesPlan:
    """Several faces of one source, each with its own Plan (its source crop and motion, its
    driving, its keypoints); every plan has the same n_frames."""

    plans: list
    faces: tuple  # the faces' indices (inputs.source_faces)

    @property
    def n_frames(self):
        return self.plans[0].n_frames

    @property
    def source(self):
        return self.plans[0].source

    @property
    def driving(self):
        return self.plans[0].driving

    @property
    def x_s(self):
        return self.plans[0].x_s

    @property
    def x_d(self):
        return self.plans[0].x_d


def plan_faces(
    models,
    source_media,
    driving_medias,
    options,
    chunker,
    stages,
    source_faces,
    *,
    lip_array=None,
    workers=None,
    keep_driving_crops=False,
    progress=lambda n: None,
    source_progress=None,
    motion_script=None,
):
    """The first pass for several faces (source_faces: inputs.SourceFace each): each face's source
    pass (its own crops, motion and ratios) and the driving pass of each distinct driving (one for every face, or one per face),
    composed per face, so relative motion is relative to each face's own source. The animation
    has as many frames as the shortest face's."""
    if len(driving_medias) not in (1, len(source_faces)):
        raise ValueError(
            f'{len(driving_medias)} driving inputs for {len(source_faces)} faces: give one driving '
            'input for every face, or one for all'
        )
    with stages.host('motion pass'):
        drivings = [
            driving_pass(
                models,
                m,
                options,
                chunker,
                stages,
                workers=workers,
                keep_crops=keep_driving_crops and i == 0,
                progress=progress,
            )  # fmt: skip
            for i, m in enumerate(driving_medias)
        ]
        limit = min(source_limit(source_media, m) or np.inf for m in driving_medias)
        sources = [
            source_pass(
                models,
                source_media,
                options.replace(face_index=face.index),
                chunker,
                stages,
                limit=None if limit == np.inf else int(limit),
                workers=workers,
                progress=progress if source_progress is None else source_progress,
                face=face,
            )  # fmt: skip
            for face in source_faces
        ]
    per_face = drivings * len(source_faces) if len(drivings) == 1 else drivings
    n = min(output_frames(s, d) for s, d in zip(sources, per_face))
    plans = [
        compose_plan(
            models, s, d, options, stages, lip_array=lip_array, n=n, motion_script=motion_script
        )
        for s, d in zip(sources, per_face)
    ]
    return FacesPlan(plans, tuple(face.index for face in source_faces))
