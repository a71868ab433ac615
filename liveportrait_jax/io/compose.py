"""Side-by-side comparison frames, e.g. (driving | source | result).

Unlike the reference, which squashes every panel to the result's width and height, panels keep their
aspect ratio and are only scaled to a common height, so a 720x1280 driving video is not distorted
next to a square result.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .images import as_rgb_uint8


def resize_to_height(image: np.ndarray, height: int) -> np.ndarray:
    """Scale an image to `height` rows keeping its aspect ratio (area filter when shrinking)."""
    h, w = image.shape[:2]
    if h == height:
        return image
    width = max(1, int(round(w * height / h)))
    interp = cv2.INTER_AREA if height < h else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def concat_side_by_side(
    frames: Sequence[np.ndarray | None], height: int | None = None
) -> np.ndarray:
    """Join RGB uint8 images left to right at a common height.

    `height` defaults to the height of the LAST panel (the result, by convention), so the animated
    output is never resampled. `None` entries are skipped, which lets callers pass an optional
    driving frame without branching.
    """
    panels = [
        as_rgb_uint8(f, f'side-by-side panel {i}') for i, f in enumerate(frames) if f is not None
    ]
    if not panels:
        raise ValueError('concat_side_by_side: no frames given')
    if height is None:
        height = panels[-1].shape[0]
    if int(height) <= 0:
        raise ValueError(f'concat_side_by_side: height must be positive, got {height}')
    return np.ascontiguousarray(np.hstack([resize_to_height(p, int(height)) for p in panels]))
