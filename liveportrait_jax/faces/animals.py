"""Cat face detection with OpenCV's bundled Haar cascade (no download, no extra model).

The reference finds animal faces with XPose keypoints (a large model we do not ship); we only need
a box to crop, so OpenCV's ``haarcascade_frontalcatface_extended.xml`` is enough for frontal cat
faces. Boxes are ``(x0, y0, x1, y1)`` float32 pixels of the input image, largest first.

Why the detector does more than one ``detectMultiScale`` call: portraits of pets are often
close-ups whose face touches or leaves the frame (skimage's ``chelsea`` does), and a Haar window
must contain the whole face to fire on it; on such photos a single call finds only parts of the
face (the muzzle, an eye) at its default strictness. So the image is also searched with
replicated borders added (the window can then extend past the frame) and at a few scales, every
raw window is kept (``minNeighbors=0``), and the windows are merged by ``groupRectangles``, whose
count of merged windows is the evidence for a face. Clusters lying inside a larger cluster are
dropped: a cat face inside a cat face is one of its parts.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .crop import SOURCE_CROP, CropResult, crop_by_box, expand_box

CAT_CASCADE = 'haarcascade_frontalcatface_extended.xml'
_PADS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)  # border added on each side, fraction of the long side
_SCALES = (1.0, 0.8, 0.64)  # extra downscales shift the cascade's coarse scale grid
_WORK_SIZE = 400  # long side the search runs at (speed; Haar is coarse)


class NoAnimalFaceError(ValueError):
    """No cat face found; the message names the file."""

    def __init__(self, source_name: Optional[str] = None):
        where = repr(str(source_name)) if source_name is not None else 'the input image'
        super().__init__(
            f'no cat face found in {where} (OpenCV frontal cat-face cascade); '
            f'pass an explicit box (x0, y0, x1, y1) to crop_animal instead'
        )
        self.source_name = source_name


_cascade = None


def _get_cascade():
    global _cascade
    if _cascade is None:
        import cv2

        path = cv2.data.haarcascades + CAT_CASCADE
        c = cv2.CascadeClassifier(path)
        if c.empty():
            raise RuntimeError(f'could not load OpenCV cascade {path}')
        _cascade = c
    return _cascade


def _contained(inner: np.ndarray, outer: np.ndarray, frac: float = 0.8) -> bool:
    x0, y0 = max(inner[0], outer[0]), max(inner[1], outer[1])
    x1, y1 = min(inner[2], outer[2]), min(inner[3], outer[3])
    inter = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return area > 0 and inter / area >= frac


def detect_cat_faces(
    image_rgb: np.ndarray,
    *,
    min_votes: int = 8,
    min_size_frac: float = 0.2,
    source_name: Optional[str] = None,
) -> np.ndarray:
    """Cat faces in an RGB image.

    image_rgb: (H, W, 3) uint8 RGB.
    min_votes: raw cascade windows a cluster needs to count as a face (higher = stricter).
    min_size_frac: smallest face side, as a fraction of the image's short side.
    Returns (N, 4) float32 boxes (x0, y0, x1, y1) in image pixels, largest first; N may be 0
    (use detect_cat_face for an error instead). Boxes may extend past the image border.
    """
    import cv2

    img = np.asarray(image_rgb)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(
            f'{source_name or "image"}: expected (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}'
        )
    H, W = img.shape[:2]
    work = min(1.0, _WORK_SIZE / max(H, W))
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    cascade = _get_cascade()
    raw = []
    for s in _SCALES:
        f = work * s
        g = cv2.resize(gray, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f != 1.0 else gray
        min_side = max(24, int(min_size_frac * min(g.shape)))
        for pad in _PADS:
            p = int(round(pad * max(g.shape)))
            gp = cv2.copyMakeBorder(g, p, p, p, p, cv2.BORDER_REPLICATE) if p else g
            hits = cascade.detectMultiScale(
                gp, scaleFactor=1.05, minNeighbors=0, minSize=(min_side, min_side)
            )
            for x, y, w, h in np.reshape(hits, (-1, 4)):
                raw.append([(x - p) / f, (y - p) / f, w / f, h / f])
    if not raw:
        return np.zeros((0, 4), np.float32)
    rects = [[int(round(v)) for v in r] for r in raw]
    # groupRectangles drops clusters with <= threshold members; duplicate the list so that a
    # threshold of min_votes - 1 on the doubled list keeps clusters with >= min_votes windows
    # while singletons can still merge.
    groups, weights = cv2.groupRectangles(rects + rects, 2 * min_votes - 1, 0.3)
    if len(groups) == 0:
        return np.zeros((0, 4), np.float32)
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in groups], dtype=np.float64)
    order = np.argsort(-(boxes[:, 2] - boxes[:, 0]))
    boxes = boxes[order]
    keep = []
    for b in boxes:
        if not any(_contained(b, k) for k in keep):
            keep.append(b)
    return np.array(keep, dtype=np.float32).reshape(-1, 4)


def detect_cat_face(
    image_rgb: np.ndarray, *, source_name: Optional[str] = None, **kwargs
) -> np.ndarray:
    """The largest cat face box (4,) float32 (x0, y0, x1, y1); NoAnimalFaceError if none."""
    boxes = detect_cat_faces(image_rgb, source_name=source_name, **kwargs)
    if len(boxes) == 0:
        raise NoAnimalFaceError(source_name)
    return boxes[0]


def crop_animal(
    image_rgb: np.ndarray,
    box: Optional[Sequence[float]] = None,
    *,
    dsize: int = SOURCE_CROP.dsize,
    scale: float = 1.6,
    vy_ratio: float = -0.05,
    source_name: Optional[str] = None,
) -> CropResult:
    """Crop an animal portrait around a face box (detected with the cat cascade if None).

    The cascade's box is tight on the face (ears to chin); ``scale`` widens it so the face takes
    about the share of the crop that a human face takes in a source crop, and ``vy_ratio`` moves
    it up a little to keep the ears. An explicit ``box`` is used as given (already the crop box).
    """
    if box is None:
        face = detect_cat_face(image_rgb, source_name=source_name)
        box = expand_box(face, scale=scale, vy_ratio=vy_ratio)
    return crop_by_box(image_rgb, box, dsize=dsize)
