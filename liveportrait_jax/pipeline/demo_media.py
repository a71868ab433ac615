"""Demo inputs made from public-domain media shipped with scikit-image (no downloads).

The source is scikit-image's `astronaut` (NASA, public domain). The driving clip is synthesised
from it: the face crop swings (roll), nods (vertical shift), leans and zooms over a few seconds,
and the mouth region is stretched open and closed, so that the pose and the lip motion both vary.
"""

import os

import cv2
import numpy as np

from liveportrait_jax.io import VideoWriter, save_image


def astronaut():
    """(512, 512, 3) uint8 RGB."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def synth_driving_frames(n_frames=24, size=256):
    """(n_frames, size, size, 3) uint8: a square, face-centred clip made from the astronaut."""
    img = astronaut()
    # The face occupies roughly x 150..330, y 40..230 of the 512x512 image; a square around it.
    cx, cy, side = 240.0, 130.0, 300.0
    frames = []
    for i in range(n_frames):
        phase = 2 * np.pi * i / max(1, n_frames)
        angle = 8.0 * np.sin(phase)  # degrees of roll
        dy = 6.0 * np.sin(2 * phase)
        dx = 5.0 * np.sin(phase + 1.0)
        zoom = 1.0 + 0.05 * np.sin(phase)
        m = cv2.getRotationMatrix2D((cx + dx, cy + dy), angle, zoom * size / side)
        m[0, 2] += size / 2 - (cx + dx)
        m[1, 2] += size / 2 - (cy + dy)
        frame = cv2.warpAffine(
            img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        # Mouth: stretch a band below the nose vertically to open and close the lips.
        opening = 0.5 * (1 - np.cos(phase * 2))
        y0, y1 = int(size * 0.62), int(size * 0.80)
        band = frame[y0:y1]
        stretched = cv2.resize(band, (size, int((y1 - y0) * (1 + 0.25 * opening))))
        frame[y0:y1] = stretched[: y1 - y0]
        frames.append(frame)
    return np.stack(frames)


def write_demo_inputs(directory, n_frames=24, fps=12):
    """Writes demo_source.png and demo_driving.mp4 into `directory`; returns their paths."""
    os.makedirs(directory, exist_ok=True)
    src = os.path.join(directory, 'demo_source.png')
    drv = os.path.join(directory, 'demo_driving.mp4')
    save_image(src, astronaut())
    with VideoWriter(drv, fps) as w:
        for f in synth_driving_frames(n_frames):
            w.write(f)
    return src, drv
