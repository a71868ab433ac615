"""Animate a source portrait (image or video) with a driving video, image or motion template.

Drivers over the stages, data flowing one way:
  read (read.py: decode ahead)  ->  faces (inputs.py: landmarks, crops; worker threads)
  ->  motion (plan.py: M, device)  ->  compose (compose.py: the reference's keypoint rules)
  ->  render (render.py: F, W, G, paste-back, device)  ->  write (outputs.py: encoders, threads)
Videos are read twice (plan, then render) instead of being held: memory does not grow with their
length. `animate` works on files, `animate_frames` on arrays; both run the same passes.
"""

import dataclasses
import os
import time
from contextlib import nullcontext
from typing import Optional

import numpy as np

from liveportrait_jax.demo import output_label
from liveportrait_jax.io.templates import DEFAULT_MAX_TEMPLATE_FRAMES
from liveportrait_jax.pipeline import outputs as out_lib
from liveportrait_jax.pipeline.chunks import Chunker
from liveportrait_jax.pipeline.inputs import check_source_size, source_faces
from liveportrait_jax.pipeline.options import AnimateOptions
from liveportrait_jax.pipeline.outputs import Stages, burn_label  # noqa: F401  (public)
from liveportrait_jax.pipeline.plan import Plan, plan_animation, plan_faces, source_limit  # noqa: F401
from liveportrait_jax.pipeline.read import Media, media_from_frames, open_media
from liveportrait_jax.pipeline.render import render_to


@dataclasses.dataclass
class AnimateResult:
    output: str  # the animated video (or image), pasted back into the source when enabled
    concat: Optional[str]  # driving | source | result comparison
    template: Optional[str]  # the driving motion written as a template (.pkl)
    gif: Optional[str]
    n_frames: int
    fps: float
    timings: dict  # seconds per stage (wall)
    crops: Optional[np.ndarray] = None  # (N, h, w, 3) animated crops (networks' size), if kept
    # The keypoints handed to the warping network (the first face's, with several faces):
    # source (1 for an image source, or N, K, 3) and driving after stitching and retargeting (N, K, 3).
    x_s: Optional[np.ndarray] = None
    x_d: Optional[np.ndarray] = None


@dataclasses.dataclass
class FramesResult:
    crops: np.ndarray  # (N, h, w, 3) uint8 animated face crops (the networks' size)
    frames: np.ndarray  # (N, H, W, 3) uint8 pasted back into the source (or the crops)
    n_frames: int
    x_d: np.ndarray  # (N, 21, 3) driving keypoints handed to W (after stitching, retargeting)
    timings: dict
    x_s: Optional[np.ndarray] = None  # (1 or N, 21, 3) source keypoints handed to W


def run(models, source, driving, options, outputs_for, *, chunk, lip_array, animals, progress,
        workers=None, keep_crops=False, panels=False, motion_script=None):  # fmt: skip
    """Both passes over read.Media inputs; `outputs_for(plan, stages)` makes the Outputs.

    panels: the outputs include the comparison video (its driving crops are kept from the first
    pass). Returns (plan, outputs, stages, kept crops or None).
    """
    check_source_size(source, options)
    stages = Stages()
    t0 = time.perf_counter()
    chunker = Chunker(chunk)
    drivings = list(driving) if isinstance(driving, (list, tuple)) else [driving]
    limit = min(source_limit(source, d) or np.inf for d in drivings)
    limit = None if limit == np.inf else int(limit)
    find, close = out_lib.progress_bar(
        limit or source.n_frames, 'faces (every face)',
        progress and source.is_video and bool(options.faces.strip()),  # else no search runs
    )  # fmt: skip
    try:
        with stages.host('faces: every face (source)') if options.faces else nullcontext():
            chosen = source_faces(
                source, options, animals=animals, workers=workers, limit=limit, progress=find
            )
    finally:
        close()
    # A bar for each kind of input that has video frames to run through M, counting exactly
    # those frames (a template or script is read at once, an image is one step): no bar shows a
    # total that is neither its input's frame count nor the render's.
    framed = [d for d in drivings if d.kind in ('video', 'image')]
    update, close = out_lib.progress_bar(
        sum(d.n_frames for d in framed), 'motion: driving (faces, M)',
        progress and any(d.is_video for d in framed),
    )  # fmt: skip
    update_source, close_source = out_lib.progress_bar(
        (limit or source.n_frames) * len(chosen), 'motion: source (faces, M)',
        progress and source.is_video,
    )  # fmt: skip
    try:
        if len(chosen) == 1 and len(drivings) == 1 and chosen[0].track is None:
            plan = plan_animation(
                models, source, drivings[0], options.replace(face_index=chosen[0].index),
                chunker, stages, animals=animals, lip_array=lip_array, workers=workers,
                keep_driving_crops=panels, progress=update, source_progress=update_source,
                motion_script=motion_script,
            )  # fmt: skip
        else:
            plan = plan_faces(
                models, source, drivings, options, chunker, stages, chosen,
                lip_array=lip_array, workers=workers, keep_driving_crops=panels, progress=update,
                source_progress=update_source, motion_script=motion_script,
            )  # fmt: skip
    finally:
        close()
        close_source()
    try:
        outputs = outputs_for(plan, stages)
        kept = render_to(
            models, plan, options, chunker, outputs, stages, progress=progress,
            desc='render (W+G, paste-back)', keep_crops=keep_crops,
        )  # fmt: skip
    finally:
        for p in getattr(plan, 'plans', [plan]):
            if p.driving.crops is not None:
                p.driving.crops.close()
    stages.add('total', time.perf_counter() - t0)
    return plan, outputs, stages, kept


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
    max_template_frames=DEFAULT_MAX_TEMPLATE_FRAMES,
    keep_frames=False,
    workers=None,
    motion_script=None,
):
    """Animates `source` with `driving` and writes the outputs to `output_dir`.

    Args:
      models: LivePortraitModels (loaded or random).
      source: path of a portrait image or a video.
      driving: path of a driving video, a driving image or a motion template (.pkl); or a list
        of them, one per face when options.faces chooses several (in the order of the faces).
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
      max_template_frames: refuse motion templates with more frames (None: no limit).
      keep_frames: also return the animated crops in the result (holds them all in memory).
      workers: landmark threads (default: faces.landmarks.default_workers()).
      motion_script: path of a motion script (.yaml / .json) whose keyframed edits go on top of
        the driving video's motion (a script can also be the driving input itself).

    Returns:
      AnimateResult with the output paths, frame count, fps and per-stage seconds.
    """
    options = options or AnimateOptions()
    label = output_label(models, label)
    src = open_media(source, max_frames=max_frames)
    if src.kind == 'template':
        raise ValueError(
            f'{src.name!r}: a motion template can drive an animation, not be its source'
        )
    driving_paths = list(driving) if isinstance(driving, (list, tuple)) else [driving]
    if not driving_paths:
        raise ValueError('no driving input given')
    drvs = [
        open_media(d, max_frames=max_frames, max_template_frames=max_template_frames)
        for d in driving_paths
    ]
    drv, driving = drvs[0], driving_paths[0]  # the first names the outputs and gives the audio
    still = not src.is_video and not any(d.is_video for d in drvs)
    paths = out_lib.output_paths(output_dir, source, driving, options, still=still)
    fps = (src.fps if src.is_video else drv.fps) or options.output_fps
    os.makedirs(output_dir, exist_ok=True)

    def outputs_for(plan, stages):
        return out_lib.file_outputs(
            paths, fps, out_lib.audio_source(options, drv, src), label, stages, still=still
        )

    script = None
    if motion_script is not None:
        from liveportrait_jax.pipeline.motion_script import load_script

        script = load_script(motion_script)
    plan, outputs, stages, kept = run(
        models, src, drvs, options, outputs_for, chunk=chunk, lip_array=lip_array,
        animals=animals, progress=progress, workers=workers, keep_crops=keep_frames,
        panels=bool(paths['concat']), motion_script=script,
    )  # fmt: skip
    if still:
        out_lib.save_stills(outputs, paths)
    template_path = None
    plans = getattr(plan, 'plans', [plan])
    for path, media, p in zip(driving_paths, drvs, plans):  # per-face drivings: one per face
        if media.kind in ('template', 'script'):  # a script's motion is the source's, edited
            continue
        d = p.driving
        written = os.path.join(output_dir, f'{out_lib.stem(path)}.pkl')
        out_lib.save_driving_template(
            written, d.motion, d.eye, d.lip, media.fps if media.fps else options.output_fps
        )
        template_path = template_path or written
    return AnimateResult(
        paths['output'],
        paths['concat'],
        template_path,
        paths['gif'],
        plan.n_frames,
        fps,
        stages.wall,
        np.stack(kept) if kept else None,
        np.asarray(plan.x_s),
        np.asarray(plan.x_d),
    )


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
    workers=None,
    motion_script=None,
):
    """In-memory animation (notebooks, web UI, ComfyUI): arrays in, arrays out.

    Args:
      source_frames: (S, H, W, 3) uint8 RGB; S = 1 is an image source, S > 1 a video source.
      driving_frames: (N, H, W, 3) uint8 RGB; N = 1 is a driving image; or a list of such
        arrays, one per face when options.faces chooses several; or a motion_script.MotionScript
        (keyframed edits of the source's own motion).
      motion_script: a MotionScript whose edits go on top of the driving frames' motion.
      Other arguments as `animate`.
    """
    options = options or AnimateOptions()
    label = output_label(models, label)
    src = media_from_frames(source_frames, name='<source>', fps=fps)
    if hasattr(driving_frames, 'edit_arrays'):  # a motion script
        s = driving_frames
        drv = Media('<motion script>', 'script', s.n_frames, s.fps, script=s)
    elif isinstance(driving_frames, (list, tuple)):  # one driving clip per face
        drv = [
            media_from_frames(d, name=f'<driving {i}>', fps=fps)
            for i, d in enumerate(driving_frames)
        ]
    else:
        drv = media_from_frames(driving_frames, name='<driving>', fps=fps)

    def outputs_for(plan, stages):
        # The arrays come back without the label; callers burn it where they show them.
        sinks = {
            'frames': out_lib.Sink('frames', [], lambda it: it['frame'], stages),
            'crops': out_lib.Sink('crops', [], lambda it: it['crop_native'], stages),
        }
        return out_lib.Outputs(sinks, stages)

    plan, outputs, stages, _ = run(
        models, src, drv, options, outputs_for, chunk=chunk, lip_array=lip_array,
        animals=animals, progress=False, workers=workers, keep_crops=True,
        motion_script=motion_script,
    )  # fmt: skip
    frames = outputs.sinks['frames'].writer
    if label:
        frames = [burn_label(f, label) for f in frames]
    crops = outputs.sinks['crops'].writer
    return FramesResult(
        np.stack(crops),
        np.stack(frames),
        plan.n_frames,
        plan.x_d,
        stages.wall,
        np.asarray(plan.x_s),
    )
