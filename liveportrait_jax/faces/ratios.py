"""Eye and lip openness ratios from MediaPipe landmarks, as the reference defines them.

Reference (``src/utils/retargeting_utils.py``, on its 203-point layout):

* eye ratio = |upper-lid midpoint - lower-lid midpoint| / |corner - corner| of each eye
  (203-point indices 6-18 over 0-12 for the left eye, 30-42 over 24-36 for the right one; each
  eye is a 24-point contour, and the crop code's eye centre mean(0, 6, 12, 18) together with this
  ratio implies corners at 0 and 12 and lid midpoints at 6 and 18).
* lip ratio = |inner upper-lip midpoint - inner lower-lip midpoint| / |mouth corner - mouth corner|
  (203-point 90-102 over 48-66; 48 and 66 are also the reference crop's lip-centre points).
* "left" is the image-left eye (the subject's right eye): the reference's layouts number points
  left to right in the image (its eye-to-eye axis must point to image-right for its crop code).

MediaPipe FaceMesh (478 points) counterparts used here:

===========  ===========================  =========================
quantity     numerator (vertical pair)    denominator (corners)
===========  ===========================  =========================
left eye     159 (upper lid) - 145 (lower)  33 (outer) - 133 (inner)
right eye    386 (upper lid) - 374 (lower)  263 (outer) - 362 (inner)
lip          13 (inner upper) - 14 (inner lower)  61 - 291 (outer corners)
===========  ===========================  =========================

159/145 and 386/374 are the middle points of MediaPipe's 9-point upper and lower lid contours,
just as 6/18 are the middles of the reference's lid contours.

Ranges, and how they were checked (numbers in CROP_NOTES.md): the reference's own motion
templates (d1, d2, d5, d7, d8 .pkl, which carry ``c_d_eyes_lst``/``c_d_lip_lst`` computed by its
203-point model) give open eyes 0.25-0.57, shut eyes 0.002-0.012, shut lips 0.000-0.005 and open
lips up to 0.67. MediaPipe on the reference's example driving videos gives open eyes 0.21-0.59,
shut lips 0.000-0.004 and open lips up to 0.82: the same scale. One known difference:
MediaPipe's lids never quite meet, so a fully shut eye reads about 0.02-0.05 (checked by eye on
a blink in d0.mp4) instead of the reference's 0.00-0.01. No correction is applied: an affine fix
fitted on a handful of blinks would be guesswork, and the retargeting heads are only fed these
values as conditioning. The reference thresholds (lip 0.03 for lip normalisation, eye 0.18 for source-video
eye retargeting) fall in the same places on both scales.
"""

from __future__ import annotations

import numpy as np

LEFT_EYE_RATIO_IDX = (159, 145, 33, 133)
RIGHT_EYE_RATIO_IDX = (386, 374, 263, 362)
LIP_RATIO_IDX = (13, 14, 61, 291)
_EPS = 1e-6  # as the reference, guards a degenerate (zero-width) denominator


def _ratio(lm: np.ndarray, i1: int, i2: int, i3: int, i4: int) -> np.ndarray:
    num = np.linalg.norm(lm[..., i1, :] - lm[..., i2, :], axis=-1)
    den = np.linalg.norm(lm[..., i3, :] - lm[..., i4, :], axis=-1)
    return (num / (den + _EPS))[..., None]


def _check(landmarks) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim < 2 or lm.shape[-1] not in (2, 3) or lm.shape[-2] < 468:
        raise ValueError(f'expected MediaPipe landmarks of shape (..., 478, 2), got {lm.shape}')
    return lm[..., :2]


def eye_close_ratio(landmarks: np.ndarray) -> np.ndarray:
    """Eye openness (left, right): (..., 478, 2) landmarks -> (..., 2) float32.

    Larger = more open; ~0.3 for a relaxed open eye, ~0.03 for a shut one. Scale and rotation
    invariant, so original-image or crop coordinates give the same value.
    """
    lm = _check(landmarks)
    return np.concatenate(
        [_ratio(lm, *LEFT_EYE_RATIO_IDX), _ratio(lm, *RIGHT_EYE_RATIO_IDX)], axis=-1
    ).astype(np.float32)


def lip_close_ratio(landmarks: np.ndarray) -> np.ndarray:
    """Lip openness: (..., 478, 2) landmarks -> (..., 1) float32; ~0 closed, up to ~0.8 wide open."""
    return _ratio(_check(landmarks), *LIP_RATIO_IDX).astype(np.float32)


def combined_eye_ratio(source_landmarks: np.ndarray, driving_eye_ratio: float) -> np.ndarray:
    """(1, 3) float32 input of the eye retargeting head: [c_s_left, c_s_right, c_d_eye]."""
    c_s = eye_close_ratio(source_landmarks).reshape(1, 2)
    return np.concatenate([c_s, np.array([[driving_eye_ratio]], np.float32)], axis=1)


def combined_lip_ratio(source_landmarks: np.ndarray, driving_lip_ratio: float) -> np.ndarray:
    """(1, 2) float32 input of the lip retargeting head: [c_s_lip, c_d_lip]."""
    c_s = lip_close_ratio(source_landmarks).reshape(1, 1)
    return np.concatenate([c_s, np.array([[driving_lip_ratio]], np.float32)], axis=1)
