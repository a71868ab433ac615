"""Training data for the stitching and retargeting heads: preparation and deterministic sampling.

`prepare_data` turns a folder of face videos into one shard per video (`shards/<video>.npz`):

    crops      (T, 256, 256, 3) uint8   source-style face crops (reference crop settings)
    landmarks  (T, 478, 2) float32      MediaPipe landmarks in crop pixels (256)
    eye        (T, 2), lip (T, 1)       openness ratios (liveportrait_jax.faces.ratios)
    masks      (T, 3, 64, 64) uint8     face, eyes, lips regions (convex hulls, dilated eyes/lips)
    kp, exp, x_s (T, 21, 3); R (T, 3, 3); t (T, 3); scale (T, 1)   the frozen M's outputs

and a `manifest.json` (frames per video, skipped videos and why, the settings used). It is
resumable: videos whose shard is already listed are skipped. Feature volumes are not stored (8 MB a
frame at full size): the training step recomputes them with the frozen F, which costs less than
reading them back.
"""

import functools
import json
import os

import cv2
import numpy as np

from liveportrait_jax import faces
from liveportrait_jax.faces.crop import SOURCE_CROP
from liveportrait_jax.io import InputError, atomic_write_path, iter_video_frames
from liveportrait_jax.pipeline import kernels
from liveportrait_jax.pipeline.chunks import Chunker
from liveportrait_jax.pipeline.read import VIDEO_EXTS

MANIFEST = 'manifest.json'
MASK_SIZE = 64
FACE, EYES, LIPS = 0, 1, 2
MOTION = ('kp', 'exp', 'x_s', 'R', 't', 'scale')
# MediaPipe indices: both eye contours (16 points each, image-left eye first) and the lips.
_EYE_POINTS = faces.crop.EYE_CONTOURS
_LIP_POINTS = faces.crop.LIPS


def region_masks(landmarks_256, size=MASK_SIZE):
    """(478, 2) landmarks in a 256 crop -> (3, size, size) uint8 masks: face, eyes, lips."""
    s = size / 256.0
    out = np.zeros((3, size, size), np.uint8)
    pts = (landmarks_256 * s).astype(np.int32)
    cv2.fillConvexPoly(out[FACE], cv2.convexHull(pts), 1)
    kernel = np.ones((3, 3), np.uint8)
    for channel, idx in ((EYES, _EYE_POINTS), (LIPS, _LIP_POINTS)):
        group = pts[list(idx)]
        half = len(group) // 2 if channel == EYES else len(group)
        for part in (group[:half], group[half:]) if channel == EYES else (group,):
            if len(part):
                cv2.fillConvexPoly(out[channel], cv2.convexHull(part), 1)
        out[channel] = cv2.dilate(out[channel], kernel, iterations=2)
    return out


def _read_manifest(out_dir, name=MANIFEST):
    path = os.path.join(out_dir, name)
    if not os.path.exists(path):
        return {'videos': {}, 'skipped': {}}
    with open(path) as f:
        return json.load(f)


def _write_manifest(out_dir, manifest, name=None):
    with atomic_write_path(os.path.join(out_dir, name or MANIFEST)) as tmp:
        with open(tmp, 'w') as f:
            json.dump(manifest, f, indent=1, sort_keys=True)


def prepare_video(models, path, *, frame_stride=2, max_frames=120, chunk=8):
    """One video -> dict of arrays (see module docstring), or raises faces.NoFaceError."""
    frames = [
        f
        for i, f in enumerate(iter_video_frames(path, max_frames=max_frames * frame_stride))
        if i % frame_stride == 0
    ][:max_frames]
    if not frames:
        raise InputError(f'{path!r}: no frames')
    tracked = faces.track_faces(frames, source_name=os.fspath(path), on_missing='hold')
    crops, lms = [], []
    for frame, face in zip(frames, tracked):
        res = faces.crop_source_image(frame, face)
        crops.append(res.image_256)
        lms.append(res.landmarks_256)
    crops = np.stack(crops)
    lms = np.stack(lms).astype(np.float32)
    motion = Chunker(chunk).map(functools.partial(kernels.motion, models), [crops], len(crops))
    out = {
        'crops': crops,
        'landmarks': lms,
        'eye': faces.eye_close_ratio(lms).astype(np.float32),
        'lip': faces.lip_close_ratio(lms).astype(np.float32),
        'masks': np.stack([region_masks(lm) for lm in lms]),
    }
    out.update({k: np.asarray(motion[k], np.float32) for k in MOTION})
    return out


def _part_name(index, count):
    return os.path.join('parts', f'manifest.{index}-of-{count}.json')


def prepare_data(
    models, video_dir, out_dir, *, frame_stride=2, max_frames=120, chunk=8, progress=True,
    log=print, process_index=0, process_count=1,
):  # fmt: skip
    """Prepares every video of `video_dir` into `out_dir` (resumable). Returns the manifest.

    With several processes (process_index of process_count; liveportrait_jax.distributed), process
    i prepares videos i, i + n, i + 2n, ... of the sorted list, writes their shards and its own
    part manifest (parts/manifest.i-of-n.json), and once every process is done process 0 merges
    the parts into manifest.json: the same shards and manifest as one process writes. A process
    that died is simply run again (with the others: its finished videos are skipped).
    """
    if not os.path.isdir(video_dir):
        raise InputError(f'{video_dir!r}: video folder not found')
    videos = sorted(f for f in os.listdir(video_dir) if f.lower().endswith(VIDEO_EXTS))
    if not videos:
        raise InputError(f'{video_dir!r}: no videos ({", ".join(VIDEO_EXTS)}) in the folder')
    os.makedirs(os.path.join(out_dir, 'shards'), exist_ok=True)
    merged = _read_manifest(out_dir)
    part = None
    if process_count > 1:
        os.makedirs(os.path.join(out_dir, 'parts'), exist_ok=True)
        part = _part_name(process_index, process_count)
        manifest = _read_manifest(out_dir, part)
        for key in ('videos', 'skipped'):  # what an earlier run (of any layout) finished
            manifest[key].update(merged[key])
        videos = videos[process_index::process_count]
    else:
        manifest = merged
    manifest['settings'] = {
        'frame_stride': frame_stride,
        'max_frames': max_frames,
        'model_config': models.config.get('name'),
        'random_weights': bool(models.random_weights),
        'crop': f'source (scale {SOURCE_CROP.scale}, vy {SOURCE_CROP.vy_ratio})',
        'mask_size': MASK_SIZE,
    }
    todo = [v for v in videos if v not in manifest['videos'] and v not in manifest['skipped']]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(videos), initial=len(videos) - len(todo), desc='prepare', unit='video')
    for name in todo:
        stem = os.path.splitext(name)[0]
        try:
            arrays = prepare_video(
                models,
                os.path.join(video_dir, name),
                frame_stride=frame_stride,
                max_frames=max_frames,
                chunk=chunk,
            )
        except (faces.NoFaceError, InputError) as e:
            manifest['skipped'][name] = str(e)
            log(f'skipped {name}: {e}')
        else:
            shard = os.path.join(out_dir, 'shards', f'{stem}.npz')
            with atomic_write_path(shard) as tmp:
                np.savez(tmp, **arrays)
            manifest['videos'][name] = {
                'shard': f'shards/{stem}.npz',
                'frames': int(len(arrays['crops'])),
            }
        _write_manifest(out_dir, manifest, part)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    if part is not None:
        _write_manifest(out_dir, manifest, part)
        manifest = _merge_parts(out_dir, process_index, process_count)
    else:
        manifest['total_frames'] = sum(v['frames'] for v in manifest['videos'].values())
        _write_manifest(out_dir, manifest)
    return manifest


def _merge_parts(out_dir, process_index, process_count):
    """After every process wrote its part: process 0 writes manifest.json from the parts; every
    process returns it."""
    from liveportrait_jax import distributed

    distributed.barrier('liveportrait-prepare-parts')
    if process_index == 0:
        merged = {'videos': {}, 'skipped': {}}
        for i in range(process_count):
            part = _read_manifest(out_dir, _part_name(i, process_count))
            for key in ('videos', 'skipped'):
                merged[key].update(part[key])
            merged['settings'] = part.get('settings')
        merged['total_frames'] = sum(v['frames'] for v in merged['videos'].values())
        _write_manifest(out_dir, merged)
    distributed.barrier('liveportrait-prepare-merged')
    return _read_manifest(out_dir)


class TrainData:
    """The prepared shards in memory, with sampling that is a pure function of (seed, step).

    Because a batch depends only on the step number, resuming at step k sees exactly the batches
    an uninterrupted run sees: the data position is the step.
    """

    def __init__(self, data_dir, videos=None):
        manifest = _read_manifest(data_dir)
        names = sorted(manifest['videos'])
        if videos is not None:
            names = [n for n in names if n in videos]
        if not names:
            raise InputError(f'{data_dir!r}: no prepared videos (run train/prepare_data.py)')
        self.names = names
        shards = []
        for n in names:
            with np.load(os.path.join(data_dir, manifest['videos'][n]['shard'])) as z:
                shards.append({k: z[k] for k in z.files})
        self.video_of = np.concatenate([np.full(len(s['crops']), i) for i, s in enumerate(shards)])
        self.arrays = {k: np.concatenate([s[k] for s in shards]) for k in shards[0]}
        self.size = len(self.video_of)

    def split(self, held_out_videos):
        """Indices of frames (train, held out) by video name."""
        held = np.isin(self.video_of, [self.names.index(v) for v in held_out_videos])
        return np.nonzero(~held)[0], np.nonzero(held)[0]

    def sample(self, seed, step, batch_size, indices=None, rows=None):
        """A batch of cross-identity pairs: dict of 'src_*' and 'drv_*' arrays, plus a target
        openness per sample ('target_eye', 'target_lip') drawn from other frames' ratios.

        rows: the rows of the batch to return (a slice or row numbers: a process's share of a
        global batch, padding rows included): the draws are those of the whole batch, only these
        rows are gathered."""
        rng = np.random.default_rng([seed, step])
        pool = np.arange(self.size) if indices is None else np.asarray(indices)
        src = rng.choice(pool, batch_size)
        drv = rng.choice(pool, batch_size)
        if len(self.names) > 1:  # prefer another identity for the driving frame
            for i in range(batch_size):
                for _ in range(8):
                    if self.video_of[drv[i]] != self.video_of[src[i]]:
                        break
                    drv[i] = rng.choice(pool)
        # Targets: half from real frames, half uniform over the observed range.
        eye_lo, eye_hi = float(self.arrays['eye'].min()), float(self.arrays['eye'].max())
        lip_lo, lip_hi = float(self.arrays['lip'].min()), float(self.arrays['lip'].max())
        uniform = rng.random(batch_size) < 0.5
        target_eye = np.where(
            uniform, rng.uniform(eye_lo, eye_hi, batch_size), self.arrays['eye'][drv].mean(1)
        )
        target_lip = np.where(
            uniform, rng.uniform(lip_lo, lip_hi, batch_size), self.arrays['lip'][drv, 0]
        )
        rows = slice(None) if rows is None else rows
        src, drv = src[rows], drv[rows]
        batch = {f'src_{k}': v[src] for k, v in self.arrays.items() if k != 'landmarks'}
        batch.update({f'drv_{k}': self.arrays[k][drv] for k in MOTION + ('eye', 'lip')})
        batch['target_eye'] = target_eye[rows].astype(np.float32)[:, None]
        batch['target_lip'] = target_lip[rows].astype(np.float32)[:, None]
        return batch
