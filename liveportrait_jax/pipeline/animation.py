"""Animate a source portrait (image or video) with a driving video, image or motion template.

Stages (each timed; device stages in fixed-size jitted chunks, see chunks.py and kernels.py):
  1. inputs: read, crop (MediaPipe landmarks), eye/lip ratios                  host
  2. motion: M on every driving frame and source frame                          device, chunked
  3. compose: the reference's keypoint rules, stitching, retargeting           device, all frames
  4. render: (F for video sources) W + G -> uint8 crops                         device, chunked
  5. paste-back and encoding, in a worker thread overlapping with stage 4       host
"""

import concurrent.futures
import dataclasses
import functools
import logging
import os
import time
from typing import Optional

import cv2
import numpy as np

from liveportrait_jax import faces
from liveportrait_jax.demo import RANDOM_LABEL, output_label
from liveportrait_jax.io import (
    MotionTemplate,
    VideoWriter,
    concat_side_by_side,
    save_image,
    save_template,
    write_gif,
)
from liveportrait_jax.pipeline import kernels
from liveportrait_jax.pipeline import motion as motion_lib
from liveportrait_jax.pipeline.chunks import Chunker
from liveportrait_jax.pipeline.inputs import (
    driving_from_frames,
    load_driving,
    load_source,
    source_from_frames,
)
from liveportrait_jax.pipeline.options import AnimateOptions

log = logging.getLogger('liveportrait_jax')

MOTION_KEYS = ('R', 'exp', 't', 'scale', 'kp', 'x_s')


@dataclasses.dataclass
class AnimateResult:
    output: str  # the animated video (or image), pasted back into the source when enabled
    concat: Optional[str]  # driving | source | result comparison
    template: Optional[str]  # the driving motion written as a template (.pkl)
    gif: Optional[str]
    n_frames: int
    fps: float
    timings: dict  # seconds per stage
    crops: Optional[np.ndarray] = None  # (N, 512, 512, 3) animated crops, when keep_frames=True


def _stem(path):
    return os.path.splitext(os.path.basename(os.fspath(path)))[0]


def burn_label(frame, text=RANDOM_LABEL):
    """Writes `text` in the top-left corner (white on a dark box), scaled to the frame."""
    out = np.ascontiguousarray(frame).copy()
    scale = max(0.35, out.shape[1] / 900.0)
    thick = max(1, int(round(scale * 2)))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    cv2.rectangle(out, (0, 0), (w + 8, h + base + 8), (0, 0, 0), -1)
    cv2.putText(
        out, text, (4, h + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA
    )
    return out


def _extract_motion(models, crops_256, chunker, progress=None):
    out = chunker.map(
        functools.partial(kernels.motion, models), [crops_256], len(crops_256), progress=progress
    )
    return {k: out[k].astype(np.float32) for k in MOTION_KEYS}


def _driving_motion(models, driving, chunker, progress=None):
    if driving.kind == 'template':
        t = driving.template
        return {'R': t.R, 'exp': t.exp, 't': t.t, 'scale': t.scale, 'kp': t.kp, 'x_s': t.x_s}
    return _extract_motion(models, driving.crops_256, chunker, progress)


def _take(motion, n):
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
):
    """Driving keypoints (N, K, 3) for every output frame, by the reference's rules.

    src: motion dict of the source, leading axis 1 (image) or N (video); drv: the driving motion
    (N frames); x_s: (1 or N, K, 3); src_eye (S, 2), src_lip (S, 1): source ratios or None;
    drv_eye (N, 2), drv_lip (N, 1): driving ratios or None.
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

    return np.asarray(
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


class _Outputs:
    """Paste-back, labels and encoding of rendered chunks, in one worker thread (ordered)."""

    def __init__(self, source, driving, options, paths, fps, audio_from, label, n_frames):
        self.source, self.driving, self.options = source, driving, options
        self.paths, self.label, self.n = paths, label, n_frames
        self.composer = FrameComposer(source, options, label)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self.futures = []
        self.video = self.concat = None
        self.still = paths['still']
        self.results, self.concats = [], []
        if not self.still:
            self.video = VideoWriter(paths['output'], fps, audio_from=audio_from)
            if paths['concat']:
                self.concat = VideoWriter(paths['concat'], fps, audio_from=audio_from)
        self.gif_frames = [] if paths['gif'] else None
        self.seconds = 0.0

    def submit(self, start, crops):
        self.futures.append(self.pool.submit(self._work, start, crops))

    def _work(self, start, crops):
        t = time.perf_counter()
        src = self.source
        for j, crop in enumerate(crops):
            i = start + j
            s = i if src.is_video else 0
            frame = self.composer.frame(i, crop)
            crop = self.composer.crop_at_dsize(crop)
            panels = None
            if self.paths['concat']:
                d = (
                    self.driving.crops_256[min(i, len(self.driving.crops_256) - 1)]
                    if self.driving.crops_256 is not None
                    else None
                )
                panels = concat_side_by_side([d, src.crops_256[s], crop])
                if self.label:
                    panels = burn_label(panels, self.label)
            if self.still:
                self.results.append(frame)
                self.concats.append(panels)
            else:
                self.video.write(frame)
                if self.concat is not None:
                    self.concat.write(panels)
            if self.gif_frames is not None:
                self.gif_frames.append(
                    cv2.resize(frame, (256, int(256 * frame.shape[0] / frame.shape[1])))
                )
        self.seconds += time.perf_counter() - t

    def close(self):
        try:
            for f in self.futures:
                f.result()
            if self.still:
                save_image(self.paths['output'], self.results[0])
                if self.paths['concat']:
                    save_image(self.paths['concat'], self.concats[0])
            else:
                self.video.close()
                if self.concat is not None:
                    self.concat.close()
            if self.gif_frames:
                write_gif(self.paths['gif'], self.gif_frames, self.paths['fps'])
        except BaseException:
            self.abort()
            raise
        finally:
            self.pool.shutdown(wait=True)

    def abort(self):
        for f in self.futures:
            f.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)
        for w in (self.video, self.concat):
            if w is not None:
                w.abort()


def _progress_bar(total, desc, enabled):
    if not enabled:
        return None, lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit='frame', leave=False)
    return bar.update, bar.close


@dataclasses.dataclass
class Plan:
    """Everything the render stage needs: keypoints for every output frame."""

    source: object  # SourceInput
    driving: object  # DrivingInput
    n_frames: int
    x_s: np.ndarray  # (1 or N, K, 3)
    x_d: np.ndarray  # (N, K, 3)
    driving_motion: dict  # (N_driving, ...) arrays, for writing a template
    timings: dict


def plan_animation(models, src, drv, options, *, chunk=8, lip_array=None, progress=False):
    """Stages 2 and 3: motion extraction (M) and keypoint composition, for loaded inputs."""
    timings = {}
    if src.is_video and drv.is_video:
        n = min(len(src.frames), drv.n_frames)
    elif src.is_video:
        n = len(src.frames)
    else:
        n = drv.n_frames
    chunker = Chunker(chunk)
    t = time.perf_counter()
    update, close = _progress_bar(drv.n_frames + len(src.frames), 'motion (M)', progress)
    drv_motion = _driving_motion(models, drv, chunker, update)
    src_motion = _extract_motion(
        models, src.crops_256[:n] if src.is_video else src.crops_256, chunker, update
    )
    close()
    timings['motion (M)'] = time.perf_counter() - t

    t = time.perf_counter()
    src_eye = src_lip = None
    if src.landmarks is not None:
        src_eye = faces.eye_close_ratio(src.landmarks).astype(np.float32)
        src_lip = faces.lip_close_ratio(src.landmarks).astype(np.float32)
        if src.is_video:
            src_eye, src_lip = src_eye[:n], src_lip[:n]
    x_s = src_motion['x_s']
    x_d = compose_keypoints(
        models,
        src_motion,
        _take(drv_motion, n),
        x_s,
        options,
        source_is_video=src.is_video,
        driving_is_video=drv.is_video,
        src_eye=src_eye,
        src_lip=src_lip,
        drv_eye=None if drv.eye_ratio is None else _take({'e': drv.eye_ratio}, n)['e'],
        drv_lip=None if drv.lip_ratio is None else _take({'l': drv.lip_ratio}, n)['l'],
        lip_array=None if lip_array is None else np.asarray(lip_array, np.float32).reshape(-1, 3),
    )
    timings['compose (keypoints, S)'] = time.perf_counter() - t
    return Plan(src, drv, n, x_s, x_d, drv_motion, timings)


def render_chunks(models, plan, *, chunk=8):
    """Stage 4: yields (start, (C, 512, 512, 3) uint8 animated crops) chunk by chunk."""
    chunker = Chunker(chunk)
    src, n = plan.source, plan.n_frames
    if src.is_video:
        fn = functools.partial(kernels.render_video_source, models)
        arrays = [src.crops_256[:n], plan.x_s[:n], plan.x_d]
    else:
        f_s = kernels.feature(models, src.crops_256[:1])
        x_s = plan.x_s[:1]
        fn, arrays = (lambda xd: kernels.render_image_source(models, f_s, x_s, xd)), [plan.x_d]
    yield from chunker.iterate(fn, arrays, n)


@dataclasses.dataclass
class FramesResult:
    crops: np.ndarray  # (N, 512, 512, 3) uint8 animated face crops (model resolution)
    frames: np.ndarray  # (N, H, W, 3) uint8 pasted back into the source (or the crops)
    n_frames: int
    x_d: np.ndarray  # (N, 21, 3) driving keypoints used
    timings: dict


def animate_frames(
    models,
    source_frames,
    driving_frames,
    options=None,
    *,
    chunk=8,
    lip_array=None,
    animals=False,
    label=None,
    fps=None,
):
    """In-memory animation (notebooks, web UI, ComfyUI): arrays in, arrays out.

    Args:
      source_frames: (S, H, W, 3) uint8 RGB; S = 1 is an image source, S > 1 a video source.
      driving_frames: (N, H, W, 3) uint8 RGB; N = 1 is a driving image.
      Other arguments as `animate`.
    """
    options = options or AnimateOptions()
    label = output_label(models, label)
    t0 = time.perf_counter()
    src = source_from_frames(
        list(source_frames), options, is_video=len(source_frames) > 1, fps=fps, animals=animals
    )
    drv = driving_from_frames(
        list(driving_frames), options, is_video=len(driving_frames) > 1, fps=fps
    )
    timings = {'inputs (landmarks, crop)': time.perf_counter() - t0}
    plan = plan_animation(models, src, drv, options, chunk=chunk, lip_array=lip_array)
    timings.update(plan.timings)
    t = time.perf_counter()
    crops = np.concatenate([c for _, c in render_chunks(models, plan, chunk=chunk)])
    timings['render (F, W+G)'] = time.perf_counter() - t
    composer = FrameComposer(src, options, label)
    frames = [composer.frame(i, crop) for i, crop in enumerate(crops)]
    timings['total'] = time.perf_counter() - t0
    return FramesResult(crops, np.stack(frames), plan.n_frames, plan.x_d, timings)


class FrameComposer:
    """Turns an animated crop into an output frame: resize, paste-back, label."""

    def __init__(self, source, options, label=None):
        self.source, self.options, self.label = source, options, label
        # As the reference: paste-back needs a crop and stitching (without stitching the face does
        # not line up with the original around the crop's border), otherwise the crop is the output.
        self.paste = (
            options.flag_pasteback
            and options.flag_do_crop
            and options.flag_stitching
            and source.M_c2o is not None
        )
        self.mask = faces.make_paste_back_mask(options.dsize) if self.paste else None

    def crop_at_dsize(self, crop):
        d = self.options.dsize
        return cv2.resize(crop, (d, d)) if crop.shape[0] != d else crop

    def frame(self, i, crop):
        src = self.source
        s = i if src.is_video else 0
        crop = self.crop_at_dsize(crop)
        frame = (
            faces.paste_back(crop, src.M_c2o[s], src.frames[s], self.mask) if self.paste else crop
        )
        return burn_label(frame, self.label) if self.label else frame


def animate(
    models,
    source,
    driving,
    output_dir,
    options=None,
    *,
    chunk=8,
    lip_array=None,
    animals=False,
    label=None,
    progress=True,
    max_frames=None,
    keep_frames=False,
):
    """Animates `source` with `driving` and writes the outputs to `output_dir`.

    Args:
      models: LivePortraitModels (loaded or random).
      source: path of a portrait image or a video.
      driving: path of a driving video, a driving image or a motion template (.pkl).
      output_dir: created if needed; outputs are `<source>--<driving>.mp4` (or .jpg when both
        inputs are images), `..._concat.mp4`, optional `.gif`, and `<driving>.pkl`, the driving
        motion as a template (written here, never next to the input).
      options: AnimateOptions (reference option names and defaults).
      chunk: frames per device batch; a video compiles once per chunk size.
      lip_array: (21, 3) neutral-lip expression for image-driven relative motion (the reference's
        lip_array); None uses the source's own expression (see README).
      animals: crop the source with the cat-face detector (or options.crop_box).
      label: text burned into every output frame; defaults to a warning for random weights.
      max_frames: read at most this many frames of each video.
      keep_frames: also return the animated crops in the result.

    Returns:
      AnimateResult with the output paths, frame count, fps and per-stage seconds.
    """
    options = options or AnimateOptions()
    label = output_label(models, label)
    t0 = time.perf_counter()
    src = load_source(source, options, animals=animals, max_frames=max_frames)
    drv = load_driving(driving, options, max_frames=max_frames)
    timings = {'inputs (decode, landmarks, crop)': time.perf_counter() - t0}
    plan = plan_animation(
        models, src, drv, options, chunk=chunk, lip_array=lip_array, progress=progress
    )
    timings.update(plan.timings)
    n = plan.n_frames

    os.makedirs(output_dir, exist_ok=True)
    template_path = None
    if drv.kind != 'template':
        m = plan.driving_motion
        template_path = os.path.join(output_dir, f'{_stem(driving)}.pkl')
        save_template(
            template_path,
            MotionTemplate(
                R=m['R'],
                exp=m['exp'],
                t=m['t'],
                scale=m['scale'],
                kp=m['kp'],
                x_s=m['x_s'],
                c_eyes=drv.eye_ratio,
                c_lip=drv.lip_ratio,
                fps=drv.fps if drv.fps else options.output_fps,
            ),
        )

    fps = (src.fps if src.is_video else drv.fps) or options.output_fps
    audio_from = None
    candidates = [(drv.has_audio, drv.path), (src.has_audio, src.path)]
    if options.audio_priority == 'source':
        candidates.reverse()
    for has, path in candidates:
        if has:
            audio_from = path
            break
    still = not src.is_video and not drv.is_video
    base = os.path.join(output_dir, f'{_stem(source)}--{_stem(driving)}')
    ext = '.jpg' if still else '.mp4'
    paths = {
        'output': base + ext,
        'concat': base + '_concat' + ext if options.flag_write_concat else None,
        'gif': base + '.gif' if options.flag_write_gif and not still else None,
        'still': still,
        'fps': fps,
    }
    outputs = _Outputs(src, drv, options, paths, fps, audio_from, label, n)

    t = time.perf_counter()
    update, close = _progress_bar(n, 'render (W+G)', progress)
    kept = [] if keep_frames else None
    try:
        for start, crops in render_chunks(models, plan, chunk=chunk):
            outputs.submit(start, crops)
            if kept is not None:
                kept.append(crops)
            if update:
                update(len(crops))
        device_done = time.perf_counter()
        close()
        outputs.close()
    except BaseException:
        close()
        outputs.abort()
        raise
    timings['render (F, W+G)'] = device_done - t
    timings['paste-back + encode (overlapped)'] = outputs.seconds
    timings['total'] = time.perf_counter() - t0
    return AnimateResult(
        paths['output'],
        paths['concat'],
        template_path,
        paths['gif'],
        n,
        fps,
        timings,
        np.concatenate(kept) if kept else None,
    )
