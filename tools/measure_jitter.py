"""Jitter and lag of --motion-smoothing on real clips (README "Steady motion").

    python tools/measure_jitter.py OUT.json CLIP [CLIP ...] [--max-frames 300]

CLIP: a motion template (.pkl: the reference's own motion extractor's keypoints of a real video)
or a video (then MediaPipe's landmarks stand in for the keypoints: no released weights needed).
Per clip and method (none, one-euro, kalman at default strength): the jitter (mean absolute second
difference, pipeline/steady.py) of the keypoints x_s (templates, in keypoint units) or of the
landmarks (videos, in units of the inter-ocular distance), and the lag in frames on the clip's
fastest head turn (the 24 frames around the largest frame-to-frame rotation or landmark motion).
"""

import argparse
import json
import os

import numpy as np

from liveportrait_jax.io.templates import load_template
from liveportrait_jax.pipeline.steady import jitter, lag_frames, smooth_motion, smooth_series

METHODS = ('none', 'one-euro', 'kalman')
WINDOW = 24


def _fastest(series):
    speed = np.abs(np.diff(series.reshape(len(series), -1), axis=0)).sum(axis=1)
    i = int(np.argmax(speed))
    lo = max(0, min(i - WINDOW // 2, len(series) - WINDOW))
    return slice(lo, lo + WINDOW)


def template_rows(path, max_frames):
    t = load_template(path)
    n = min(t.n_frames, max_frames)
    motion = {
        k: np.asarray(getattr(t, k))[:n]
        for k in ('R', 'exp', 't', 'scale', 'kp', 'x_s')
        if getattr(t, k) is not None  # older layouts have no kp / x_s
    }
    fps = t.fps or 25.0
    win = _fastest(motion['R'])
    rows = {}
    for m in METHODS:
        out = smooth_motion(motion, m, fps=fps)
        rows[m] = {f'jitter {k}': jitter(out[k]) for k in ('x_s', 'R', 'exp', 't') if k in out}
        rows[m]['lag on fastest turn (frames)'] = lag_frames(motion['R'][win], out['R'][win], 8)
    return n, fps, rows


def video_rows(path, max_frames):
    from liveportrait_jax import faces
    from liveportrait_jax.pipeline.read import open_media

    media = open_media(path, max_frames=max_frames)
    lms = np.stack([f.landmarks for _, f in faces.landmarks.track_faces_stream(
        media.frames(), 0, source_name=path, on_missing='hold', workers=1)])  # fmt: skip
    eyes = np.linalg.norm(lms[:, 33] - lms[:, 263], axis=1).mean()
    lms = lms / eyes  # inter-ocular distance units
    fps = media.fps or 25.0
    win = _fastest(lms)
    rows = {}
    for m in METHODS:
        out = smooth_series(lms, m, fps=fps)
        rows[m] = {
            'jitter landmarks': jitter(out),
            'lag on fastest turn (frames)': lag_frames(lms[win], out[win], 8),
        }
    return len(lms), fps, rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('out')
    p.add_argument('clips', nargs='+')
    p.add_argument('--max-frames', type=int, default=300)
    args = p.parse_args()
    result = {}
    for clip in args.clips:
        kind = template_rows if clip.endswith('.pkl') else video_rows
        n, fps, rows = kind(clip, args.max_frames)
        result[os.path.basename(clip)] = {'frames': n, 'fps': fps, 'methods': rows}
        for m, r in rows.items():
            cells = ', '.join(f'{k} {v:.3g}' for k, v in r.items())
            print(f'{os.path.basename(clip):>10} ({n} frames) {m:>8}: {cells}')
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
