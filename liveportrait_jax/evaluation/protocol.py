"""The `eval` protocol over a folder of face videos (README "Evaluation").

Self-reenactment (the paper's): the first frame of a clip is the source, the clip drives it, and
every generated frame is compared with the real frame: L1, PSNR, SSIM, landmark distance, head-pose
error, expression distance, eye- and lip-openness error (metrics.py).

Cross-reenactment: the first frame of clip i is driven by clip i + 1 (a ring over the sorted
clips: another person, each clip drives once). Real frames do not exist, so the motion is
compared: the generated head pose and expression move from their first frame as the driving
frames move from theirs (errors of those changes), and the generated eye / lip openness follows
the driving frames' (absolute).

Every metric has a "no motion" baseline beside it: the source frame repeated, measured the same
way, so that a number is never read alone. Pose and expression come from the model set's motion
extractor (M) on 256 crops made with one crop per clip (the source's, from its first frame; for a
driving clip its own first frame's), landmarks and openness from MediaPipe on the full frames.
Without paste-back (no stitching, or no paste-back asked) the outputs are face crops: the real
frames are then cropped the same way (the source's crop) and crops are compared with crops.
"""

import dataclasses
import functools
import logging
import os

import cv2
import numpy as np

from liveportrait_jax.evaluation import metrics as M

log = logging.getLogger('liveportrait_jax')

SELF_METRICS = ('l1', 'psnr', 'ssim', 'landmarks', 'pose_deg', 'expression', 'eye_open', 'lip_open')
CROSS_METRICS = ('pose_deg', 'expression', 'eye_open', 'lip_open')
HIGHER_IS_BETTER = ('psnr', 'ssim')


@dataclasses.dataclass
class Described:
    """What the metrics need of a sequence of frames."""

    angles: np.ndarray  # (N, 3) pitch, yaw, roll degrees (M)
    exp: np.ndarray  # (N, 21, 3) (M)
    landmarks: np.ndarray  # (N, 478, 2) pixels (MediaPipe)
    eye: np.ndarray  # (N, 2)
    lip: np.ndarray  # (N, 1)


def describe(models, frames, M_o2c, dsize, *, name, chunk=8):
    """Motion of `frames` ((N, H, W, 3) uint8) cropped with one (3, 3) matrix, and landmarks."""
    from liveportrait_jax import faces
    from liveportrait_jax.pipeline import kernels
    from liveportrait_jax.pipeline.chunks import Chunker

    crops = np.stack([faces.crop.crop_with_matrix(f, M_o2c, dsize) for f in frames])
    info = Chunker(chunk).map(functools.partial(kernels.motion, models), [crops], len(crops))
    angles = np.concatenate(
        [np.asarray(info[k]).reshape(-1, 1) for k in ('pitch', 'yaw', 'roll')], 1
    )
    try:
        tracked = faces.landmarks.track_faces(list(frames), source_name=name, on_missing='hold')
        lms = np.stack([f.landmarks for f in tracked]).astype(np.float32)
    except faces.NoFaceError:  # e.g. random weights' output: the landmark metrics are NaN
        log.warning('%s: no face found by MediaPipe; its landmark metrics are left out', name)
        lms = np.full((len(frames), 478, 2), np.nan, np.float32)
    return Described(
        angles, np.asarray(info['exp'], np.float32).reshape(len(frames), -1, 3), lms,
        faces.eye_close_ratio(lms), faces.lip_close_ratio(lms),
    )  # fmt: skip


def _repeat(d, n):
    return Described(*(np.repeat(getattr(d, f.name)[:1], n, 0) for f in dataclasses.fields(d)))


def _at(frames, hw):
    """Frames resized to (H, W) where they differ (a source larger than 1280 px is animated
    smaller)."""
    if frames.shape[1:3] == tuple(hw):
        return frames
    return np.stack([cv2.resize(f, (hw[1], hw[0]), interpolation=cv2.INTER_AREA) for f in frames])


def _self_metrics(real, gen, d_real, d_gen):
    return {
        'l1': M.l1(gen, real),
        'psnr': M.psnr(gen, real),
        'ssim': M.ssim(gen, real),
        'landmarks': M.landmark_distance(d_gen.landmarks, d_real.landmarks),
        'pose_deg': M.pose_error(d_gen.angles, d_real.angles),
        'expression': M.expression_distance(d_gen.exp, d_real.exp),
        'eye_open': M.openness_error(d_gen.eye, d_real.eye),
        'lip_open': M.openness_error(d_gen.lip, d_real.lip),
    }


def _cross_metrics(d_drv, d_gen):
    return {
        'pose_deg': M.pose_error(d_gen.angles - d_gen.angles[:1], d_drv.angles - d_drv.angles[:1]),
        'expression': M.expression_distance(d_gen.exp - d_gen.exp[:1], d_drv.exp - d_drv.exp[:1]),
        'eye_open': M.openness_error(d_gen.eye, d_drv.eye),
        'lip_open': M.openness_error(d_gen.lip, d_drv.lip),
    }


def _row(clip, mode, driving, result, baseline, n):
    row = {'clip': clip, 'mode': mode, 'driving': driving, 'frames': n}
    for k, v in result.items():  # NaN frames (no face found) are left out of a clip's mean
        row[k] = _nanmean(v)
        row[f'{k}_baseline'] = _nanmean(baseline[k])
    return row


def _nanmean(v):
    v = np.asarray(v, np.float64)
    return float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else float('nan')


def read_clip(path, max_frames):
    from liveportrait_jax.pipeline.inputs import resize_to_limit
    from liveportrait_jax.pipeline.read import open_media

    media = open_media(path, max_frames=max_frames)
    if media.kind != 'video':
        raise ValueError(f'{path!r}: expected a video')
    frames = np.stack([resize_to_limit(f) for f in media.frames()])
    if len(frames) < 2:
        raise ValueError(f'{path!r}: needs at least 2 frames')
    return frames, media.fps


def evaluate_pair(models, source_frames, driving_frames, options, *, mode, chunk, names):
    """One clip's row (self: the source clip drives its first frame; cross: another clip drives
    it) and its sample frames (real or driving, generated, baseline) of the middle frame."""
    from liveportrait_jax import faces
    from liveportrait_jax.pipeline import animate_frames
    from liveportrait_jax.pipeline.inputs import crop_source

    src = source_frames[0]
    res = animate_frames(models, src[None], driving_frames, options, chunk=chunk, label='')
    n = res.n_frames
    M_src = crop_source(src, options, name=names[0]).M_o2c
    if res.frames.shape[1:3] == src.shape[:2]:  # pasted back: compare whole frames
        M_view = M_src

        def view(frames, M=None):
            return _at(frames, res.frames.shape[1:3])
    else:  # no paste-back: the outputs are crops; compare them with the same crops of the frames
        M_view = np.eye(3, dtype=np.float32)

        def view(frames, M=M_src):
            return np.stack([faces.crop.warp_crop(f, M, options.dsize) for f in frames])

    d_gen = describe(models, res.frames, M_view, options.dsize, name=f'{names[0]} (generated)')
    base_frames = np.repeat(view(src[None]), n, 0)
    if mode == 'self':
        real = view(driving_frames[:n])
        d_real = describe(models, real, M_view, options.dsize, name=names[1])
        d_base = _repeat(d_real, n)  # the source frame is the clip's first frame
        result = _self_metrics(real, res.frames, d_real, d_gen)
        baseline = _self_metrics(real, base_frames, d_real, d_base)
        reference = real
    else:
        drv = driving_frames[:n]
        M_drv = crop_source(drv[0], options, name=names[1]).M_o2c
        d_drv = describe(models, drv, M_drv, options.dsize, name=names[1])
        d_base = _repeat(describe(models, src[None], M_src, options.dsize, name=names[0]), n)
        result, baseline = _cross_metrics(d_drv, d_gen), _cross_metrics(d_drv, d_base)
        reference = view(drv, M_drv) if M_view is not M_src else view(drv)
        reference = _at(reference, res.frames.shape[1:3])
    mid = n // 2
    sample = np.concatenate([reference[mid], res.frames[mid], base_frames[mid]], axis=1)
    return _row(names[0], mode, names[1], result, baseline, n), sample


def summarize(rows):
    """{mode: {metric: {mean, ci95, baseline_mean, baseline_ci95, clips}}} (95% Student-t) over
    the rows without an error."""
    out = {}
    rows = [r for r in rows if 'error' not in r]  # clips that could not be evaluated
    for mode in sorted({r['mode'] for r in rows}):
        mine = [r for r in rows if r['mode'] == mode]
        names = SELF_METRICS if mode == 'self' else CROSS_METRICS
        out[mode] = {}
        for k in names:
            mean, ci = M.mean_ci([r[k] for r in mine])
            bmean, bci = M.mean_ci([r[f'{k}_baseline'] for r in mine])
            out[mode][k] = {
                'mean': mean, 'ci95': ci, 'baseline_mean': bmean, 'baseline_ci95': bci,
                'clips': len(mine), 'higher_is_better': k in HIGHER_IS_BETTER,
            }  # fmt: skip
    return out


def list_clips(folder):
    from liveportrait_jax.io import InputError
    from liveportrait_jax.pipeline.read import VIDEO_EXTS

    if not os.path.isdir(folder):
        raise InputError(f'{folder!r}: folder not found')
    clips = sorted(f for f in os.listdir(folder) if f.lower().endswith(VIDEO_EXTS))
    if not clips:
        raise InputError(f'{folder!r}: no videos ({", ".join(VIDEO_EXTS)}) in the folder')
    return [os.path.join(folder, c) for c in clips]


def evaluate(models, folder, options, *, cross=False, max_frames=50, chunk=8, progress=True,
             clips=None):  # fmt: skip
    """Rows (one per clip and mode) and sample frames {row key: image} for the clips of `folder`
    (or the given subset `clips`, e.g. a process's share)."""
    paths = list_clips(folder)
    mine = paths if clips is None else [p for p in paths if p in clips]
    jobs = [('self', p, p) for p in mine]
    if cross:
        if len(paths) < 2:
            raise ValueError(f'{folder!r}: cross-reenactment needs at least 2 clips')
        ring = {p: paths[(i + 1) % len(paths)] for i, p in enumerate(paths)}
        jobs += [('cross', p, ring[p]) for p in mine]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc='eval', unit='clip')
    rows, samples, cache = [], {}, {}

    def clip(p):
        if p not in cache:
            cache.clear()  # at most one clip's frames held besides the one in use
            cache[p] = read_clip(p, max_frames)[0]
        return cache[p]

    for mode, src, drv in jobs:
        names = (os.path.basename(src), os.path.basename(drv))
        try:
            s = clip(src)
            d = s if drv == src else read_clip(drv, max_frames)[0]
            row, sample = evaluate_pair(models, s, d, options, mode=mode, chunk=chunk, names=names)
        except ValueError as e:  # no face, unreadable or too short: recorded, the others go on
            log.warning('%s (%s): %s', names[0], mode, e)
            rows.append({'clip': names[0], 'mode': mode, 'driving': names[1], 'error': str(e)})
        else:
            rows.append(row)
            samples[f'{mode}:{names[0]}'] = sample
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return rows, samples


def job_metrics(models, job, *, chunk, max_frames):
    """`eval`'s cross-reenactment metrics of a job (README "Evaluation"): how the animation follows
    the driving video's pose, expression and eye/lip openness, beside the no-motion baseline.
    Renders the job again in memory (first max_frames frames); {metric: value, metric_baseline:
    value}, or {'metrics_error': why} for a job they do not apply to."""
    from liveportrait_jax.pipeline.inputs import resize_to_limit
    from liveportrait_jax.pipeline.read import open_media

    if isinstance(job.driving, list) or job.options.faces:
        return {'metrics_error': 'metrics are for one face and one driving video'}
    src, drv = open_media(job.source, max_frames=1), open_media(job.driving, max_frames=max_frames)
    if drv.kind != 'video':
        return {'metrics_error': 'metrics need a driving video'}
    source = np.stack([resize_to_limit(f) for f in src.frames(1)])
    driving, _ = read_clip(job.driving, max_frames)
    names = (os.path.basename(job.source), os.path.basename(job.driving))
    row, _ = evaluate_pair(
        models, source, driving, job.options, mode='cross', chunk=chunk, names=names
    )
    return {k: v for k, v in row.items() if k not in ('clip', 'mode', 'driving', 'frames')}
