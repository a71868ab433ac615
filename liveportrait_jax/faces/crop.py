"""Face cropping with the reference LivePortrait's geometry, driven by MediaPipe landmarks.

Reference semantics (KwaiVGI/LivePortrait ``src/utils/crop.py``, ``cropper.py``), restated:

* Two points fix the face axis: the midpoint of the two eye centres and the lip centre (midpoint
  of the mouth corners). ``uy`` = unit vector eyes -> lip (points "down" the face), ``ux`` = ``uy``
  turned 90 degrees clockwise (points to image-right on an upright face); the roll angle is the
  angle of ``ux``.
* The landmarks are expressed in that rotated frame; their bounding box there gives the centre
  and the extent. The crop is a square of side ``scale * max(extent)`` around that centre, moved
  by ``vx_ratio * side`` along ``ux`` and ``vy_ratio * side`` along ``uy`` (negative ``vy_ratio``
  moves it up the face, to keep more forehead and hair).
* Source images (``crop_source_image``, defaults ``SOURCE_CROP``): the crop is rotated so the
  face axis is vertical (``flag_do_rot``). Driving videos (``crop_driving_frames``, defaults
  ``DRIVING_CROP``): an axis-aligned box per frame (no rotation), and one box for the whole video:
  the mean of the per-frame boxes, so the camera does not shake with landmark jitter.
* The crop is a similarity warp (``cv2.warpAffine``, bilinear, black border) to ``dsize`` x
  ``dsize``; the networks get a 256x256 resize of it (INTER_AREA for sources, bilinear for
  driving frames, as in the reference pipeline).

MediaPipe indices. The reference's points are insightface's 106 (sources) or its own 203
(driving); their bounding box is fixed by the jaw contour (ear level round the chin), the
eyebrows' top edge and, through the mean, nothing else (eyes, nose and lips lie inside that
hull). ``CROP_LANDMARK_INDICES`` below is the anatomical counterpart in the 478-point mesh: the
lower face oval from 127 (right of the image: 356) round the chin 152, both eyebrows (upper and
lower edges), both eye contours, the lips and the nose ridge. The full mesh is NOT used: its oval
climbs to the hairline (point 10), which would make the box ~20% taller than the reference's and
push it up. Eye centres are the mean of the two corners and the two eyelid midpoints (the
reference's 4-point mean); the lip centre is the mean of the outer mouth corners 61 and 291.
See CROP_NOTES.md for the check against the reference's own cropped driving videos.

Matrices are float64 3x3 homogeneous: ``M_o2c`` maps original pixels to crop pixels (of the
``dsize`` crop), ``M_c2o`` is its inverse. Points are (x, y) rows: ``p' = p @ M[:2, :2].T + M[:2, 2]``.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from . import landmarks as _lm

# --- MediaPipe FaceMesh indices (478-point layout, refine_landmarks=True) -------------------
# Face oval from the image-left ear (127) round the chin (152) to the image-right ear (356):
# the part of the oval that the reference's jaw contour covers.
FACE_OVAL_LOWER = (
    127,
    234,
    93,
    132,
    58,
    172,
    136,
    150,
    149,
    176,
    148,
    152,
    377,
    400,
    378,
    379,
    365,
    397,
    288,
    361,
    323,
    454,
    356,
)
EYEBROWS = (
    70,
    63,
    105,
    66,
    107,
    55,
    65,
    52,
    53,
    46,  # image-left brow
    300,
    293,
    334,
    296,
    336,
    285,
    295,
    282,
    283,
    276,
)  # image-right brow
EYE_CONTOURS = (
    33,
    7,
    163,
    144,
    145,
    153,
    154,
    155,
    133,
    173,
    157,
    158,
    159,
    160,
    161,
    246,
    263,
    249,
    390,
    373,
    374,
    380,
    381,
    382,
    362,
    398,
    384,
    385,
    386,
    387,
    388,
    466,
)
LIPS = (
    61,
    146,
    91,
    181,
    84,
    17,
    314,
    405,
    321,
    375,
    291,
    409,
    270,
    269,
    267,
    0,
    37,
    39,
    40,
    185,
    78,
    95,
    88,
    178,
    87,
    14,
    317,
    402,
    318,
    324,
    308,
    415,
    310,
    311,
    312,
    13,
    82,
    81,
    80,
    191,
)
NOSE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 327, 64, 294, 48, 278)
CROP_LANDMARK_INDICES = np.array(
    sorted(set(FACE_OVAL_LOWER + EYEBROWS + EYE_CONTOURS + LIPS + NOSE))
)

# "Left" is the image-left eye (the subject's right eye), as in the reference's layouts.
LEFT_EYE_CENTER = (33, 133, 159, 145)  # outer corner, inner corner, upper / lower lid midpoint
RIGHT_EYE_CENTER = (263, 362, 386, 374)
MOUTH_CORNERS = (61, 291)

# The reference's crop defaults, their one home (AnimateOptions' defaults read them).
CropSettings = namedtuple(
    'CropSettings', 'scale vy_ratio vx_ratio dsize flag_do_rot', defaults=(0.0, 512, True)
)
SOURCE_CROP = CropSettings(scale=2.3, vy_ratio=-0.125)
DRIVING_CROP = CropSettings(scale=2.2, vy_ratio=-0.1, flag_do_rot=False)  # axis-aligned boxes
NETWORK_SIZE = 256


@dataclass
class CropResult:
    """One crop.

    image: (dsize, dsize, 3) uint8 RGB crop.
    image_256: (256, 256, 3) uint8 RGB, the networks' input size.
    M_o2c, M_c2o: (3, 3) float64, original <-> crop (dsize) pixel transforms.
    landmarks: (N, 2) float32 landmarks in crop pixels (dsize), or None.
    landmarks_256: landmarks * 256 / dsize, or None.
    center: (2,) crop centre in original pixels; size: crop side in original pixels;
    angle: roll of the crop in radians (0 when not rotated).
    """

    image: np.ndarray
    image_256: np.ndarray
    M_o2c: np.ndarray
    M_c2o: np.ndarray
    landmarks: Optional[np.ndarray]
    landmarks_256: Optional[np.ndarray]
    center: np.ndarray
    size: float
    angle: float

    @property
    def dsize(self) -> int:
        return int(self.image.shape[0])


@dataclass
class DrivingCrops:
    """Crops of a driving video (T frames), all through one box unless smoothing='none'.

    images: (T, dsize, dsize, 3) uint8; images_256: (T, 256, 256, 3) uint8.
    landmarks: (T, 478, 2) float32 in crop pixels (dsize); landmarks_256 likewise at 256.
    M_o2c, M_c2o: (T, 3, 3) float64.
    boxes_raw: (T, 4) per-frame boxes (x0, y0, x1, y1) from the landmarks, before smoothing.
    boxes: (T, 4) the boxes actually cropped.
    """

    images: np.ndarray
    images_256: np.ndarray
    landmarks: np.ndarray
    landmarks_256: np.ndarray
    M_o2c: np.ndarray
    M_c2o: np.ndarray
    boxes_raw: np.ndarray
    boxes: np.ndarray


# --- geometry --------------------------------------------------------------------------------


def transform_points(points: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Apply a 2x3 or 3x3 affine ``M`` to (..., 2) points; returns float32 (..., 2)."""
    pts = np.asarray(points, dtype=np.float64)
    return (pts @ M[:2, :2].T + M[:2, 2]).astype(np.float32)


def face_axis_points(landmarks: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(eye_midpoint, lip_centre), each (2,), from (478, 2) MediaPipe landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_l = lm[list(LEFT_EYE_CENTER)].mean(axis=0)
    eye_r = lm[list(RIGHT_EYE_CENTER)].mean(axis=0)
    lip = lm[list(MOUTH_CORNERS)].mean(axis=0)
    return (eye_l + eye_r) / 2.0, lip


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[1] != 2 or lm.shape[0] < _lm.NUM_LANDMARKS - 10:
        raise ValueError(f'expected MediaPipe landmarks of shape (478, 2), got {lm.shape}')
    return lm


def crop_rect_from_landmarks(
    landmarks: np.ndarray, scale: float, vx_ratio: float, vy_ratio: float
) -> Tuple[np.ndarray, float, float]:
    """Rotated square crop from (478, 2) landmarks: (center (2,), side, angle in radians).

    Same construction as the reference's parse_rect_from_landmark (see module docstring).
    """
    lm = _check_landmarks(landmarks)
    eyes, lip = face_axis_points(lm)
    uy = lip - eyes
    n = np.linalg.norm(uy)
    uy = uy / n if n > 1e-3 else np.array([0.0, 1.0])  # degenerate axis: assume upright
    ux = np.array([uy[1], -uy[0]])
    angle = float(np.arctan2(ux[1], ux[0]))
    pts = lm[CROP_LANDMARK_INDICES]
    R = np.stack([ux, uy])  # rows: the rotated frame's axes
    c0 = pts.mean(axis=0)
    rp = (pts - c0) @ R.T
    lo, hi = rp.min(axis=0), rp.max(axis=0)
    mid = (lo + hi) / 2.0
    side = float(np.max(hi - lo)) * scale
    center = c0 + ux * mid[0] + uy * mid[1] + ux * (vx_ratio * side) + uy * (vy_ratio * side)
    return center, side, angle


def crop_box_from_landmarks(
    landmarks: np.ndarray, scale: float, vx_ratio: float, vy_ratio: float
) -> np.ndarray:
    """Axis-aligned square box (x0, y0, x1, y1), float64, around the rotated-rect centre.

    As the reference's driving-video path: the rotated rectangle's centre and side, with the
    rotation then dropped.
    """
    center, side, _ = crop_rect_from_landmarks(landmarks, scale, vx_ratio, vy_ratio)
    h = side / 2.0
    return np.array([center[0] - h, center[1] - h, center[0] + h, center[1] + h])


def similarity_o2c(center: np.ndarray, size: float, angle: float, dsize: int) -> np.ndarray:
    """(3, 3) float64 map from original pixels to a dsize crop of side ``size`` at ``center``,
    rotated by ``angle`` so that the face's ``ux`` axis becomes +x."""
    s = dsize / float(size)
    c, sn = np.cos(angle), np.sin(angle)
    cx, cy = float(center[0]), float(center[1])
    t = dsize / 2.0
    return np.array(
        [
            [s * c, s * sn, t - s * (c * cx + sn * cy)],
            [-s * sn, s * c, t - s * (-sn * cx + c * cy)],
            [0.0, 0.0, 1.0],
        ]
    )


def _warp(image: np.ndarray, M: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.warpAffine(
        image,
        np.ascontiguousarray(M[:2], dtype=np.float64),
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def _resize(image: np.ndarray, size: int, area: bool) -> np.ndarray:
    import cv2

    interp = cv2.INTER_AREA if area else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def _check_rgb(image: np.ndarray, what: str = 'image') -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f'{what}: expected (H, W, 3) uint8 RGB, got {arr.shape} {arr.dtype}')
    return arr


def _crop_with(
    image: np.ndarray, M_o2c: np.ndarray, dsize: int, landmarks, center, size, angle, area_256: bool
) -> CropResult:
    img = _warp(image, M_o2c, (dsize, dsize))
    lmk = transform_points(landmarks, M_o2c) if landmarks is not None else None
    return CropResult(
        image=img,
        image_256=_resize(img, NETWORK_SIZE, area_256),
        M_o2c=M_o2c,
        M_c2o=np.linalg.inv(M_o2c),
        landmarks=lmk,
        landmarks_256=None if lmk is None else (lmk * (NETWORK_SIZE / dsize)).astype(np.float32),
        center=np.asarray(center, dtype=np.float64),
        size=float(size),
        angle=float(angle),
    )


def warp_crop(image: np.ndarray, M_o2c: np.ndarray, dsize: int) -> np.ndarray:
    """The (dsize, dsize, 3) crop of ``image`` through the (3, 3) original -> crop map."""
    return _warp(image, M_o2c, (dsize, dsize))


def crop_with_matrix(image: np.ndarray, M_o2c: np.ndarray, dsize: int, area_256: bool = True):
    """The 256 network input of a crop made before (same matrix, same pixels as its CropResult's
    image_256): a second pass over a video re-crops instead of keeping every crop."""
    return _resize(warp_crop(image, M_o2c, dsize), NETWORK_SIZE, area_256)


def _resolve_landmarks(image, landmarks, face_index, source_name):
    if landmarks is None:
        return _lm.detect_face(image, face_index, source_name=source_name).landmarks
    if isinstance(landmarks, _lm.Face):
        return landmarks.landmarks
    return np.asarray(landmarks, dtype=np.float32)


# --- public crops ----------------------------------------------------------------------------


def crop_source_image(
    image_rgb: np.ndarray,
    landmarks: Union[None, np.ndarray, '_lm.Face'] = None,
    *,
    face_index: int = 0,
    dsize: int = SOURCE_CROP.dsize,
    scale: float = SOURCE_CROP.scale,
    vx_ratio: float = SOURCE_CROP.vx_ratio,
    vy_ratio: float = SOURCE_CROP.vy_ratio,
    flag_do_rot: bool = SOURCE_CROP.flag_do_rot,
    source_name: Optional[str] = None,
) -> CropResult:
    """Crop a source portrait the way the reference does.

    image_rgb: (H, W, 3) uint8 RGB.
    landmarks: (478, 2) MediaPipe landmarks or a Face; None -> detect (static mode) and take the
      ``face_index``-th largest face (NoFaceError naming ``source_name`` if there is none).
    Returns a CropResult (landmarks in crop pixels).
    """
    image_rgb = _check_rgb(image_rgb, source_name or 'source image')
    lm = _resolve_landmarks(image_rgb, landmarks, face_index, source_name)
    center, size, angle = crop_rect_from_landmarks(lm, scale, vx_ratio, vy_ratio)
    if not flag_do_rot:
        angle = 0.0
    M = similarity_o2c(center, size, angle, dsize)
    return _crop_with(image_rgb, M, dsize, lm, center, size, angle, area_256=True)


def crop_source_frames(
    frames: Sequence[np.ndarray],
    landmarks: Optional[np.ndarray] = None,
    *,
    face_index: int = 0,
    source_name: Optional[str] = None,
    **crop_kwargs,
) -> list:
    """Per-frame source crops of a source video (the reference crops each frame on its own).

    frames: sequence of (H, W, 3) uint8 RGB; landmarks: (T, 478, 2) or None (tracked).
    crop_kwargs: as crop_source_image (dsize, scale, vx_ratio, vy_ratio, flag_do_rot).
    Returns a list of CropResult.
    """
    if landmarks is None:
        landmarks = _lm.stack_landmarks(
            _lm.track_faces(frames, face_index, source_name=source_name)
        )
    return [
        crop_source_image(f, lm, source_name=source_name, **crop_kwargs)
        for f, lm in zip(frames, landmarks)
    ]


def smooth_boxes(boxes: np.ndarray, smoothing: Union[str, int] = 'global') -> np.ndarray:
    """Smooth (T, 4) boxes over time.

    "global": every frame gets the mean box (the reference's choice: a fixed virtual camera,
      no jitter at all; right for the usual talking-head driving clip).
    "none": unchanged.
    int k: centred moving average over k frames (edges padded by repetition), for long clips in
      which the head travels too far for one box.
    """
    b = np.asarray(boxes, dtype=np.float64)
    if smoothing == 'global':
        return np.repeat(b.mean(axis=0, keepdims=True), len(b), axis=0)
    if smoothing == 'none' or smoothing in (0, 1):
        return b.copy()
    if isinstance(smoothing, (int, np.integer)) and smoothing > 1:
        k = int(smoothing)
        lo, hi = (k - 1) // 2, k // 2
        padded = np.concatenate([np.repeat(b[:1], lo, 0), b, np.repeat(b[-1:], hi, 0)])
        csum = np.cumsum(np.concatenate([np.zeros((1, 4)), padded]), axis=0)
        return (csum[k:] - csum[:-k]) / k
    raise ValueError(
        f"smoothing must be 'global', 'none' or a window length > 1, got {smoothing!r}"
    )


def box_o2c(box: Sequence[float], dsize: int) -> np.ndarray:
    """(3, 3) map from original pixels to a dsize crop of box (x0, y0, x1, y1), no rotation.

    A non-square box is made square (side = max(width, height)) around its centre, so nothing of
    it is cut and the crop is never stretched.
    """
    x0, y0, x1, y1 = [float(v) for v in box]
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f'empty box {box}')
    side = max(x1 - x0, y1 - y0)
    return similarity_o2c(np.array([(x0 + x1) / 2, (y0 + y1) / 2]), side, 0.0, dsize)


def crop_driving_frames(
    frames: Sequence[np.ndarray],
    landmarks: Optional[np.ndarray] = None,
    *,
    face_index: int = 0,
    dsize: int = DRIVING_CROP.dsize,
    scale: float = DRIVING_CROP.scale,
    vx_ratio: float = DRIVING_CROP.vx_ratio,
    vy_ratio: float = DRIVING_CROP.vy_ratio,
    smoothing: Union[str, int] = 'global',
    source_name: Optional[str] = None,
    on_missing: str = 'raise',
) -> DrivingCrops:
    """Crop the frames of a driving video like the reference's crop_driving_video.

    frames: sequence of T (H, W, 3) uint8 RGB frames (a list or a (T, H, W, 3) array).
    landmarks: (T, 478, 2) MediaPipe landmarks, or None -> tracked with track_faces
      (``face_index``, ``on_missing`` and ``source_name`` as there).
    smoothing: see smooth_boxes; the reference uses "global".
    """
    if len(frames) == 0:
        raise ValueError(f'{source_name or "driving video"}: no frames')
    if landmarks is None:
        landmarks = _lm.stack_landmarks(
            _lm.track_faces(frames, face_index, source_name=source_name, on_missing=on_missing)
        )
    landmarks = np.asarray(landmarks, dtype=np.float32)
    if len(landmarks) != len(frames):
        raise ValueError(f'{len(frames)} frames but {len(landmarks)} landmark sets')
    raw = np.stack([crop_box_from_landmarks(lm, scale, vx_ratio, vy_ratio) for lm in landmarks])
    boxes = smooth_boxes(raw, smoothing)
    imgs, imgs256, lmks, mo2c = [], [], [], []
    for i, (frame, lm, box) in enumerate(zip(frames, landmarks, boxes)):
        frame = _check_rgb(frame, f'{source_name or "driving video"}, frame {i}')
        M = box_o2c(box, dsize)
        imgs.append(_warp(frame, M, (dsize, dsize)))
        imgs256.append(_resize(imgs[-1], NETWORK_SIZE, area=False))
        lmks.append(transform_points(lm, M))
        mo2c.append(M)
    lmks = np.stack(lmks)
    mo2c = np.stack(mo2c)
    return DrivingCrops(
        images=np.stack(imgs),
        images_256=np.stack(imgs256),
        landmarks=lmks,
        landmarks_256=(lmks * (NETWORK_SIZE / dsize)).astype(np.float32),
        M_o2c=mo2c,
        M_c2o=np.linalg.inv(mo2c),
        boxes_raw=raw,
        boxes=boxes,
    )


def crop_by_box(
    image_rgb: np.ndarray,
    box: Sequence[float],
    *,
    dsize: int = SOURCE_CROP.dsize,
    landmarks: Optional[np.ndarray] = None,
    area_256: bool = True,
) -> CropResult:
    """Crop an explicit box (x0, y0, x1, y1) (e.g. an animal face) to dsize x dsize, no rotation.

    landmarks: optional (N, 2) points to carry into crop pixels.
    """
    image_rgb = _check_rgb(image_rgb)
    M = box_o2c(box, dsize)
    x0, y0, x1, y1 = [float(v) for v in box]
    return _crop_with(
        image_rgb,
        M,
        dsize,
        landmarks,
        np.array([(x0 + x1) / 2, (y0 + y1) / 2]),
        max(x1 - x0, y1 - y0),
        0.0,
        area_256=area_256,
    )


def expand_box(
    box: Sequence[float], scale: float = 1.0, vx_ratio: float = 0.0, vy_ratio: float = 0.0
) -> np.ndarray:
    """Square box of side scale * max(w, h) around the box centre, shifted by (vx, vy) * side."""
    x0, y0, x1, y1 = [float(v) for v in box]
    side = max(x1 - x0, y1 - y0) * scale
    cx = (x0 + x1) / 2 + vx_ratio * side
    cy = (y0 + y1) / 2 + vy_ratio * side
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


# --- paste back ------------------------------------------------------------------------------


def make_paste_back_mask(
    dsize: int = SOURCE_CROP.dsize, feather: float = 0.06, exponent: float = 6.0
) -> np.ndarray:
    """Soft (dsize, dsize) float32 mask in [0, 1] for pasting a generated crop into the original.

    Shape: a superellipse |u|^p + |v|^p <= 1 (u, v in [-1, 1] over the crop, p = ``exponent``),
    i.e. a square with rounded corners, 1 inside and falling to 0 at the crop edge with a
    smoothstep over the outer ``feather`` fraction of the radius.

    Why this shape: the stitching module is trained so that the whole generated crop, not just
    the face, agrees with the source, so most of the crop should be kept (as the reference's own
    template does); but the crop's edge carries warping artefacts (zero padding where motion pulls
    in content from outside) and would show as a hard square seam. Fading out only near the edge,
    with rounded corners (where the crop is furthest from the face), hides the seam while keeping
    hair and shoulders from the animated result. The fade is C1-smooth, so no ring appears.
    """
    if dsize < 2:
        raise ValueError('dsize must be >= 2')
    c = (np.arange(dsize, dtype=np.float64) + 0.5) / dsize * 2.0 - 1.0  # pixel centres in (-1, 1)
    u, v = np.meshgrid(c, c)
    r = (np.abs(u) ** exponent + np.abs(v) ** exponent) ** (1.0 / exponent)
    t = np.clip((1.0 - r) / max(feather, 1e-6), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def rescale_c2o(M_c2o: np.ndarray, from_size: int, to_size: int) -> np.ndarray:
    """M_c2o for a crop of ``from_size`` pixels, re-expressed for the same crop at ``to_size``."""
    S = np.diag([from_size / to_size, from_size / to_size, 1.0])
    return np.asarray(M_c2o, dtype=np.float64) @ S


def warp_mask_to_original(
    mask: np.ndarray, M_c2o: np.ndarray, original_hw: Tuple[int, int]
) -> np.ndarray:
    """Crop-space (h, w) mask -> (H, W) float32 mask in original pixels (compute once per video)."""
    H, W = original_hw
    return _warp(np.asarray(mask, dtype=np.float32), M_c2o, (W, H))


def paste_back(
    crop_rgb: np.ndarray,
    M_c2o: np.ndarray,
    original_rgb: np.ndarray,
    mask: Optional[np.ndarray] = None,
    *,
    mask_original: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Blend a (generated) crop back into the original image.

    crop_rgb: (h, w, 3) uint8 (or float in 0..255) crop whose pixels ``M_c2o`` maps to the
      original (use rescale_c2o if the crop was made at another size).
    M_c2o: (3, 3) or (2, 3) crop -> original map.
    original_rgb: (H, W, 3) uint8.
    mask: (h, w) float mask in crop space, default make_paste_back_mask(h); or pass
      ``mask_original`` (H, W), already warped by warp_mask_to_original, to skip that warp.
    Returns (H, W, 3) uint8: mask * warped_crop + (1 - mask) * original. Pixels where the warped
    mask is 0 are returned unchanged.
    """
    original_rgb = _check_rgb(original_rgb, 'original image')
    crop = np.asarray(crop_rgb)
    if crop.ndim != 3 or crop.shape[2] != 3:
        raise ValueError(f'crop: expected (h, w, 3), got {crop.shape}')
    H, W = original_rgb.shape[:2]
    if mask_original is None:
        if mask is None:
            mask = make_paste_back_mask(crop.shape[0]) if crop.shape[0] == crop.shape[1] else None
            if mask is None:
                raise ValueError('non-square crop: pass a mask')
        mask = np.asarray(mask, dtype=np.float32)
        if mask.shape != crop.shape[:2]:
            raise ValueError(f'mask shape {mask.shape} != crop shape {crop.shape[:2]}')
        mask_original = warp_mask_to_original(mask, M_c2o, (H, W))
    elif mask_original.shape[:2] != (H, W):
        raise ValueError(f'mask_original shape {mask_original.shape} != image shape {(H, W)}')
    warped = _warp(crop.astype(np.float32), M_c2o, (W, H))
    m = mask_original[..., None].astype(np.float32)
    out = m * warped + (1.0 - m) * original_rgb.astype(np.float32)
    # Where the mask is exactly 0, keep the original bytes (no float round trip).
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    keep = m[..., 0] <= 0.0
    out[keep] = original_rgb[keep]
    return out
