"""Paste-back of animated crops into their full frames on the device, matching the host's cv2 path.

The host reference is ``liveportrait_jax.faces.crop.paste_back``: it warps the crop-space mask and
the crop into the original frame with ``cv2.warpAffine`` (INTER_LINEAR, BORDER_CONSTANT 0) and
blends ``rint(clip(m * warped + (1 - m) * original))``, keeping the original bytes where m <= 0.
Here the same thing runs batched inside one jitted function, so only finished uint8 frames come
back to the host.

Two things make it cheap and exact:

* Window. Paste-back changes no pixel outside the warped crop's support (the warped mask is 0
  there, and such pixels keep their bytes), so each frame only needs a window around that
  support. ``paste_window`` sizes one static window for a whole video (one compile) and places it
  per frame; the kernel cuts the window out, pastes into it, and writes it back.
* cv2's arithmetic. cv2.warpAffine (OpenCV 4.11, ``WarpAffineInvoker`` in imgwarp.cpp) does not
  sample at the exact source position: with M the inverse (dst -> src) map, in double,

      adelta[x] = rint(M[0] * x * 1024)        bdelta[x] = rint(M[3] * x * 1024)
      X0[y] = rint((M[1] * y + M[2]) * 1024) + 16
      Y0[y] = rint((M[4] * y + M[5]) * 1024) + 16
      X = (X0[y] + adelta[x]) >> 5             Y = (Y0[y] + bdelta[x]) >> 5

  i.e. source coordinates in units of 1/1024 (AB_BITS = 10), reduced with a rounding delta to
  1/32 pixel (INTER_BITS = 5). The neighbour is (X >> 5, Y >> 5) and the bilinear weights are
  the products of (1 - f, f) for the 1/32-quantised fractions (X & 31) / 32, (Y & 31) / 32
  (cv2's float table ``initInterTab2D``; exact in float32). Neighbours outside the source read 0.
  Sampling at the exact position instead moves samples by up to 1/64 px, which is several uint8
  levels at sharp edges, so it is emulated bit for bit.

  The rint(...) terms are the delicate part: they need the fractional part of ~2^23-sized
  products, which float32 (24-bit mantissa) cannot give (about 1/8 of a 1/1024 unit off, enough
  to move 0.1-0.4 % of samples by 1/32 px and to change pixels by up to 5 levels on sharp crops,
  measured on 40 random crops of a 720p frame). So the inverse matrix travels to the device as fixed point (``inverse_affine``):
  each coefficient times 1024 as an integer with 45 fraction bits in four 15-bit int32 limbs,
  and the products are formed with int32 limb arithmetic, exactly. The rounding is half to even,
  as cv2's. What remains from cv2's double arithmetic: the encoding rounds each coefficient to
  2^-46 of a 1/1024 unit (2^-31 after multiplying by x < 2^15) and cv2's doubles round the
  products to ~2^-30 too, so a rint(...) term can differ only when the product is within ~2^-29
  of a half-integer: never seen in practice. (Checked against the installed OpenCV 4.11 by the
  tests; should a later OpenCV sample float images differently, they will say so.)

What is not bit-exact: the float32 sums (mask interpolation, blending) may round differently by
an ulp (XLA may fuse multiply-adds), which flips rint() at .5 boundaries only: at most 1 uint8
level, measured on 16 of 2.3e8 channel values (27 batches of 8 random crops at 512x512, 720p
and 1080p; tests/test_paste_device.py checks <= 1 level and >= 99.9 % equal).
"""

from __future__ import annotations

import functools
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

AB_BITS = 10  # cv2: source coordinates in units of 1 / 2**AB_BITS px
INTER_BITS = 5  # cv2: ... reduced to 1 / 2**INTER_BITS px for the interpolation table
INTER_TAB_SIZE = 1 << INTER_BITS
ROUND_DELTA = (1 << AB_BITS) // INTER_TAB_SIZE // 2  # cv2's round_delta for INTER_LINEAR: 16

_LIMB_BITS = 15  # limb products (< 2^15 * 2^15) and their carries stay inside int32
_LIMB_MASK = (1 << _LIMB_BITS) - 1
_NUM_LIMBS = 4  # three fraction limbs (45 bits) and one signed integer limb
_FRAC_BITS = _LIMB_BITS * (_NUM_LIMBS - 1)
# Range of exact int32 arithmetic: pixel coordinates |x|, |y| < 2^15 keep the limb products
# below 2^30; with |linear coefficients| <= 16 (a crop side of at least crop_size / 16 original
# px) and |translation| < 2^19 px, every source coordinate in 1/1024 px, and every partial sum,
# stays below 2^31 for any pixel of such a frame.
_MAX_COORD = 1 << _LIMB_BITS
_MAX_LINEAR = 16.0
_MAX_SHIFT = float(1 << 19)


# --- host helpers ----------------------------------------------------------------------------


def paste_window(
    frame_hw: Tuple[int, int], M_c2o: np.ndarray, crop_size: int, margin: int = 2
) -> Tuple[np.ndarray, Tuple[int, int]]:
    """Static window covering every pixel that paste-back can change, and its place per frame.

    frame_hw: (H, W) of the original frames.
    M_c2o: (N, 3, 3) (or (3, 3)) float64 crop -> original maps of N frames.
    crop_size: side of the square crop (e.g. 512).
    margin: extra pixels around the box. The support is computed from the real-valued map while
      cv2 samples at positions rounded to 1/32 source px; 2 px covers that for any crop whose
      side is below 64 * crop_size original px.

    A destination pixel gets a non-zero (bilinear) mask only if its source position lies in the
    open square (-1, crop_size) on both axes, so the box is that square's 4 mapped corners, plus
    ``margin``, clipped to the frame.

    Returns (origins, window): window = (wh, ww) Python ints, the largest box over the frames
    (never larger than the frame, at least 1x1), a static shape so that the kernel compiles once
    per video; origins: (N, 2) int32 (y0, x0), the window's top-left in each frame, moved so that
    the window lies inside the frame and still covers that frame's box. A frame whose crop misses
    the frame entirely gets a window at the nearest edge, where its mask is 0 (nothing changes).
    """
    H, W = int(frame_hw[0]), int(frame_hw[1])
    if not (0 < H < _MAX_COORD and 0 < W < _MAX_COORD):
        raise ValueError(f'frame size {(H, W)}: each side must be in 1..{_MAX_COORD - 1}')
    M = np.asarray(M_c2o, dtype=np.float64).reshape(-1, 3, 3)
    lo, hi = -1.0, float(crop_size)
    corners = np.array([[lo, lo], [hi, lo], [lo, hi], [hi, hi]])  # (x, y) rows
    pts = np.einsum('kj,nij->nki', corners, M[:, :2, :2]) + M[:, None, :2, 2]  # (N, 4, 2)
    x0 = np.clip(np.floor(pts[..., 0].min(axis=1)) - margin, 0, W - 1)
    x1 = np.clip(np.ceil(pts[..., 0].max(axis=1)) + margin, 0, W - 1)
    y0 = np.clip(np.floor(pts[..., 1].min(axis=1)) - margin, 0, H - 1)
    y1 = np.clip(np.ceil(pts[..., 1].max(axis=1)) + margin, 0, H - 1)
    # A box entirely off one side of the frame clips to a single edge row/column: its mask is 0
    # there, so a 1-pixel (or any) window is still exact; only the size matters for the maximum.
    hs = (y1 - y0 + 1).astype(np.int64)
    ws = (x1 - x0 + 1).astype(np.int64)
    wh = int(min(max(hs.max(initial=1), 1), H))
    ww = int(min(max(ws.max(initial=1), 1), W))
    # Shift windows that would stick out past the bottom/right edge back inside; the box is no
    # larger than the window, so the shifted window still covers it.
    oy = np.minimum(y0, H - wh)
    ox = np.minimum(x0, W - ww)
    origins = np.stack([oy, ox], axis=1).astype(np.int32)
    return origins, (wh, ww)


def _invert_affine64(M: np.ndarray) -> np.ndarray:
    """(N, 2, 3) float64 inverses, with cv2.invertAffineTransform's exact operation order."""
    m00, m01, m02 = M[:, 0, 0], M[:, 0, 1], M[:, 0, 2]
    m10, m11, m12 = M[:, 1, 0], M[:, 1, 1], M[:, 1, 2]
    D = m00 * m11 - m01 * m10
    D = np.where(D != 0, 1.0 / np.where(D != 0, D, 1.0), 0.0)
    a11, a22 = m11 * D, m00 * D
    a12, a21 = -m01 * D, -m10 * D
    b1 = -a11 * m02 - a12 * m12
    b2 = -a21 * m02 - a22 * m12
    return np.stack([np.stack([a11, a12, b1], -1), np.stack([a21, a22, b2], -1)], axis=1)


def inverse_affine(M_c2o: np.ndarray) -> np.ndarray:
    """The original -> crop map that cv2.warpAffine(crop, M_c2o[:2], ...) samples with, encoded
    exactly for the device.

    M_c2o: (N, 3, 3) or (N, 2, 3) (or a single (3, 3) / (2, 3)) float64 crop -> original maps.
    cv2 inverts the 2x3 matrix in double (as cv2.invertAffineTransform; repeated here with the
    same operation order). Each coefficient of the inverse, times 1024 (cv2's AB_SCALE), is
    stored as round(c * 1024 * 2^45) in four int32 limbs [bits 0-14, 15-29, 30-44, rest (signed)]
    so that the device can form cv2's fixed-point products exactly (see the module docstring for
    why float32 is not enough). ``decode_inverse_affine`` turns it back into a matrix.

    Returns (N, 2, 3, 4) int32. Raises ValueError for maps outside the exact range: linear
    coefficients of the inverse up to 16 in size (a crop side of at least crop_size / 16 original
    px), translations below 2^19 px.
    """
    M = np.asarray(M_c2o, dtype=np.float64)
    M = M.reshape((-1,) + M.shape[-2:])[:, :2, :3]
    inv = _invert_affine64(M)
    if not np.all(np.isfinite(inv)):
        raise ValueError('inverse_affine: singular or non-finite M_c2o')
    lin, shift = np.abs(inv[..., :2]).max(initial=0.0), np.abs(inv[..., 2]).max(initial=0.0)
    if lin > _MAX_LINEAR or shift >= _MAX_SHIFT:
        raise ValueError(
            f'inverse_affine: |linear| {lin:.3g} > {_MAX_LINEAR} or |shift| {shift:.3g} >= 2^19: '
            'outside the range the fixed-point device warp handles exactly'
        )
    out = np.empty(inv.shape + (_NUM_LIMBS,), dtype=np.int32)
    for idx in np.ndindex(inv.shape):
        # Python ints: round(float) is exact and half-to-even; c * 2^55 is an exact double.
        k = round(float(inv[idx]) * float(1 << (AB_BITS + _FRAC_BITS)))
        limbs = [(k >> (_LIMB_BITS * i)) & _LIMB_MASK for i in range(_NUM_LIMBS - 1)]
        out[idx] = limbs + [k >> _FRAC_BITS]  # floor: the top limb carries the sign
    return out


def decode_inverse_affine(inv_fixed: np.ndarray) -> np.ndarray:
    """(..., 2, 3, 4) int32 limbs from inverse_affine -> (..., 2, 3) float64 matrix."""
    k = np.asarray(inv_fixed).astype(np.float64)
    scale = 2.0 ** (_LIMB_BITS * np.arange(_NUM_LIMBS) - _FRAC_BITS - AB_BITS)
    return (k * scale).sum(axis=-1)


# --- device kernels --------------------------------------------------------------------------


def _float_to_limbs(inv):
    """(..., 2, 3) float matrix -> (..., 2, 3, 4) int32 limbs, exactly (for float32 input).

    Only for callers that pass a float32 matrix: its own rounding (2^-24 relative) is then the
    error, of the size the module docstring describes; inverse_affine's encoding avoids it.
    Coefficients must satisfy |c| * 1024 < 2^31 (no range check on the device).
    """
    v = inv.astype(jnp.float32) * float(1 << AB_BITS)  # power-of-two scaling: exact
    top = jnp.floor(v)
    r = v - top  # exact: the float32's bits below the binary point
    limbs = []
    for _ in range(_NUM_LIMBS - 1):
        r = r * float(1 << _LIMB_BITS)
        d = jnp.floor(r)
        limbs.append(d)
        r = r - d
    # Most significant fraction limb first above; the layout is least significant first.
    limbs = limbs[::-1] + [top]
    return jnp.stack([x.astype(jnp.int32) for x in limbs], axis=-1)


def _as_limbs(inv):
    inv = jnp.asarray(inv)
    if jnp.issubdtype(inv.dtype, jnp.integer):
        if inv.shape[-3:] != (2, 3, _NUM_LIMBS):
            raise ValueError(f'fixed-point inverse: expected (..., 2, 3, 4), got {inv.shape}')
        return inv.astype(jnp.int32)
    if inv.shape[-2:] != (2, 3):
        raise ValueError(f'inverse matrix: expected (..., 2, 3), got {inv.shape}')
    return _float_to_limbs(inv)


def _round_affine(k, t, d=None):
    """rint(c * t + e) in int32, exactly, half to even (cv2's saturate_cast<int>(double)).

    k: (4,) int32 limbs of c (units of 1/1024 px, 45 fraction bits); t: (n,) int32, |t| < 2^15;
    d: optional (4,) limbs of e. Returns (n,) int32.
    """
    p = [k[i] * t + (0 if d is None else d[i]) for i in range(_NUM_LIMBS)]
    half = 1 << (_LIMB_BITS - 1)  # 1/2 in the top fraction limb: round = floor(v + 1/2)
    s1 = p[1] + (p[0] >> _LIMB_BITS)
    s2 = p[2] + (s1 >> _LIMB_BITS) + half
    r = p[3] + (s2 >> _LIMB_BITS)
    # v + 1/2 was an integer (v exactly k + 1/2): cv2 rounds ties to even.
    tie = ((p[0] | s1 | s2) & _LIMB_MASK) == 0
    return r - (tie & ((r & 1) == 1)).astype(jnp.int32)


def _quantised_coords(limbs, origin, window):
    """cv2's fixed-point source coordinates for a window: (X, Y), each (wh, ww) int32 in 1/32 px."""
    wh, ww = window
    origin = jnp.asarray(origin, dtype=jnp.int32)
    ys = origin[0] + jnp.arange(wh, dtype=jnp.int32)
    xs = origin[1] + jnp.arange(ww, dtype=jnp.int32)
    # Same split as cv2: a per-column product and a per-row affine term, rounded separately.
    adelta = _round_affine(limbs[0, 0], xs)
    bdelta = _round_affine(limbs[1, 0], xs)
    X0 = _round_affine(limbs[0, 1], ys, limbs[0, 2]) + ROUND_DELTA
    Y0 = _round_affine(limbs[1, 1], ys, limbs[1, 2]) + ROUND_DELTA
    shift = AB_BITS - INTER_BITS
    X = (X0[:, None] + adelta[None, :]) >> shift
    Y = (Y0[:, None] + bdelta[None, :]) >> shift
    return X, Y


def _bilinear_taps(limbs, origin, window, hw):
    """Where and how cv2 samples a (h, w) source for each pixel of a destination window.

    Returns (starts, valid, weights): starts (wh*ww, 2) int32, the top-left (row, col) of the 2x2
    neighbourhood in the source padded by one zero pixel on each side; valid (wh, ww) bool, false
    where all four neighbours are outside the source (cv2 writes the border value, 0, there);
    weights: four (wh, ww) float32 arrays for (y0, x0), (y0, x0+1), (y0+1, x0), (y0+1, x0+1).
    """
    h, w = hw
    X, Y = _quantised_coords(limbs, origin, window)
    ix, iy = X >> INTER_BITS, Y >> INTER_BITS
    # cv2's float table: weights (1 - f, f) per axis, f = k / 32; their products are exact.
    fx = (X & (INTER_TAB_SIZE - 1)).astype(jnp.float32) * (1.0 / INTER_TAB_SIZE)
    fy = (Y & (INTER_TAB_SIZE - 1)).astype(jnp.float32) * (1.0 / INTER_TAB_SIZE)
    gx, gy = 1.0 - fx, 1.0 - fy
    weights = (gy * gx, gy * fx, fy * gx, fy * fx)
    # With one pixel of zero padding, any neighbourhood that touches the source lies inside the
    # padded image, and its outside neighbours read 0, as cv2's BORDER_CONSTANT neighbours do.
    valid = (ix >= -1) & (ix < w) & (iy >= -1) & (iy < h)
    sy = jnp.clip(iy + 1, 0, h)
    sx = jnp.clip(ix + 1, 0, w)
    return jnp.stack([sy, sx], axis=-1).reshape(-1, 2), valid, weights


def _bilinear(padded, starts, valid, weights):
    """Sample padded (h+2, w+2, C) (any dtype) at the taps of _bilinear_taps: (wh, ww, C) float32."""
    c = padded.shape[-1]
    # One gather of 2x2xC patches per pixel: on CPU far cheaper than four point gathers.
    dnums = lax.GatherDimensionNumbers(
        offset_dims=(1, 2, 3), collapsed_slice_dims=(), start_index_map=(0, 1)
    )
    patches = lax.gather(padded, starts, dnums, slice_sizes=(2, 2, c), mode='clip')
    patches = patches.reshape(valid.shape + (2, 2, c)).astype(jnp.float32)
    w00, w01, w10, w11 = (wt[..., None] for wt in weights)
    # cv2's order of the sum: (y0, x0), (y0, x0+1), (y0+1, x0), (y0+1, x0+1), left to right.
    out = patches[..., 0, 0, :] * w00 + patches[..., 0, 1, :] * w01
    out = out + patches[..., 1, 0, :] * w10
    out = out + patches[..., 1, 1, :] * w11
    return jnp.where(valid[..., None], out, 0.0)


def _pad1(x):
    """Zero border of one pixel round the two spatial axes of (..., h, w, C)."""
    pad = [(0, 0)] * (x.ndim - 3) + [(1, 1), (1, 1), (0, 0)]
    return jnp.pad(x, pad)


def warp_affine_bilinear(image, inv, origin, window):
    """cv2.warpAffine(image, M, (W, H), INTER_LINEAR, BORDER_CONSTANT 0) on one window of the
    destination, with cv2's fixed-point arithmetic (see the module docstring).

    image: (h, w, C) source (e.g. the crop), float32 (any real dtype is read as float32).
    inv: the destination -> source map: (2, 3, 4) int32 limbs from inverse_affine (exact), or a
      (2, 3) float matrix (converted exactly, but then carrying its own float32 rounding).
    origin: (2,) int32 (y0, x0), the window's top-left in destination pixels (may be traced);
      destination coordinates must stay below 2^15 in size.
    window: static (wh, ww).
    Returns (wh, ww, C) float32: destination pixels (y0 + i, x0 + j). Single frame; vmap it for
    a batch.
    """
    h, w, _ = image.shape
    taps = _bilinear_taps(_as_limbs(inv), origin, window, (h, w))
    return _bilinear(_pad1(image.astype(jnp.float32)), *taps)


@functools.partial(jax.jit, static_argnames=('window',))
def paste_back_batch(crops_u8, frames_u8, inv, origins, mask, *, window):
    """Paste B generated crops back into their frames, as faces.crop.paste_back does on the host.

    crops_u8: (B, h, w, 3) uint8 crops (float32 in 0..255 works too, as on the host).
    frames_u8: (B, H, W, 3) uint8 original frames, or (1, H, W, 3) to paste every crop into the
      same image (a still source).
    inv: (B, 2, 3, 4) int32 from inverse_affine(M_c2o) (or (B, 2, 3) float, approximate).
    origins: (B, 2) int32 window origins from paste_window.
    mask: (h, w) float32 crop-space mask (e.g. make_paste_back_mask(h)).
    window: static (wh, ww) from paste_window.

    Per frame: the window is cut out of the frame, mask and crop are warped into it with cv2's
    arithmetic, blended as paste_back (float32 m * crop + (1 - m) * frame, rint, clip, original
    bytes where the warped mask <= 0) and written back. Pixels outside the window are copied.
    Returns (B, H, W, 3) uint8.
    """
    B, h, w, _ = crops_u8.shape
    wh, ww = window
    if mask.shape != (h, w):
        raise ValueError(f'mask shape {mask.shape} != crop shape {(h, w)}')
    if frames_u8.shape[0] not in (1, B):
        raise ValueError(f'{frames_u8.shape[0]} frames for {B} crops')
    # Crops stay uint8 until gathered (a quarter of the bytes); the mask is shared, not batched.
    crops_pad = _pad1(crops_u8)
    mask_pad = _pad1(mask.astype(jnp.float32)[:, :, None])
    limbs = _as_limbs(inv)

    def warp(crop_pad, lm, origin):
        taps = _bilinear_taps(lm, origin, window, (h, w))  # shared by crop and mask
        return _bilinear(crop_pad, *taps), _bilinear(mask_pad, *taps)

    warped, m = jax.vmap(warp)(crops_pad, limbs, origins)  # (B, wh, ww, 3), (B, wh, ww, 1)

    frame_axis = 0 if frames_u8.shape[0] == B else None
    frames = frames_u8 if frame_axis == 0 else frames_u8[0]

    def cut(frame, o):
        return lax.dynamic_slice(frame, (o[0], o[1], 0), (wh, ww, 3))

    def put(frame, win, o):
        return lax.dynamic_update_slice(frame, win, (o[0], o[1], 0))

    orig = jax.vmap(cut, in_axes=(frame_axis, 0))(frames, origins)  # (B, wh, ww, 3) uint8
    blend = m * warped + (1.0 - m) * orig.astype(jnp.float32)
    new = jnp.clip(jnp.rint(blend), 0, 255).astype(jnp.uint8)
    # Keep the original bytes where the mask is 0 (no float round trip), as paste_back does.
    new = jnp.where(m <= 0.0, orig, new)
    return jax.vmap(put, in_axes=(frame_axis, 0, 0))(frames, new, origins)


# Sharpness of the hand-over between overlapping faces (see paste_faces_batch): a face's weight
# falls as exp(-FACE_PRIORITY_SHARPNESS * r^2) with r its normalised distance from its own crop's
# centre, so where two crops overlap the pixel goes to the face it is more central to.
FACE_PRIORITY_SHARPNESS = 16.0


def face_priority(size: int) -> np.ndarray:
    """(size, size) float32 log-weight of a crop's pixels: -s * r^2, r = 0 at the centre, 1 at an
    edge's midpoint (see FACE_PRIORITY_SHARPNESS)."""
    c = (np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0
    u, v = np.meshgrid(c, c)
    return (-FACE_PRIORITY_SHARPNESS * (u * u + v * v)).astype(np.float32)


@functools.partial(jax.jit, static_argnames=('window',))
def paste_faces_batch(crops_u8, frames_u8, inv, origins, present, mask, priority, *, window):
    """Paste F faces' crops into each of B frames at once, overlaps blended without seams.

    crops_u8: (B, F, h, w, 3) uint8 crops, face f of frame b.
    frames_u8: (B, H, W, 3) uint8 frames, or (1, H, W, 3) for a still source.
    inv: (B, F, 2, 3, 4) int32 from inverse_affine; origins: (B, F, 2) int32 from paste_window
      (one static window for all faces and frames).
    present: (B, F) float32, 1 where face f is in frame b, 0 where it is not (not pasted).
    mask: (h, w) float32 crop-space paste mask; priority: (h, w) float32 from face_priority.
    window: static (wh, ww).

    Each face's crop, mask and priority are warped into its window with cv2's arithmetic (as in
    paste_back_batch). A pixel covered by one face gets exactly paste_back's blend
    m * crop + (1 - m) * frame. Where several faces' crops overlap (each crop also shows its
    neighbours, un-animated, in its margin), pasting them one over the other would let a face's
    margin cover the animated neighbour; instead the faces share the pixel by weights
    m_f * exp(priority_f) (normalised), i.e. the face the pixel is most central to wins, with a
    smooth hand-over, and the frame keeps the weight prod(1 - m_f).
    Returns (B, H, W, 3) uint8.
    """
    B, F, h, w, _ = crops_u8.shape
    wh, ww = window
    if mask.shape != (h, w) or priority.shape != (h, w):
        raise ValueError(f'mask/priority shapes {mask.shape}/{priority.shape} != crop {(h, w)}')
    H, W = frames_u8.shape[1:3]
    frames = jnp.broadcast_to(frames_u8, (B, H, W, 3))
    aux_pad = _pad1(jnp.stack([mask, priority], axis=-1).astype(jnp.float32))  # (h+2, w+2, 2)
    limbs = _as_limbs(inv.reshape(B * F, *inv.shape[2:])).reshape(B, F, *inv.shape[2:])

    def warp(crop, lm, origin):
        taps = _bilinear_taps(lm, origin, window, (h, w))
        return _bilinear(_pad1(crop), *taps), _bilinear(aux_pad, *taps)

    # (B, F, wh, ww, 3) and (B, F, wh, ww, 2)
    warped, aux = jax.vmap(jax.vmap(warp))(crops_u8, limbs, origins)
    m = aux[..., :1] * present[:, :, None, None, None]
    # Outside a crop the warped priority reads 0 (the zero border); m is 0 there as well.
    weight = m * jnp.exp(aux[..., 1:] - FACE_PRIORITY_SHARPNESS)  # <= 1, no overflow

    def put_add(acc, win, o):
        cur = lax.dynamic_slice(acc, (o[0], o[1], 0), (wh, ww, acc.shape[-1]))
        return lax.dynamic_update_slice(acc, cur + win, (o[0], o[1], 0))

    def accumulate(b_warped, b_weight, b_m, b_origins):
        # Full-frame sums over the faces: sum w * crop, sum w, and sum log(1 - m) (coverage).
        num = jnp.zeros((H, W, 3), jnp.float32)
        den = jnp.zeros((H, W, 1), jnp.float32)
        keep = jnp.zeros((H, W, 1), jnp.float32)
        for f in range(F):  # F is static and small (faces in one picture)
            o = b_origins[f]
            num = put_add(num, b_weight[f] * b_warped[f], o)
            den = put_add(den, b_weight[f], o)
            keep = put_add(keep, jnp.log1p(-jnp.minimum(b_m[f], 1.0 - 1e-7)), o)
        return num, den, keep

    num, den, log_keep = jax.vmap(accumulate)(warped, weight, m, origins)
    cover = 1.0 - jnp.exp(log_keep)  # 1 - prod(1 - m_f): m where a single face covers
    face = num / jnp.where(den > 0.0, den, 1.0)
    orig = frames.astype(jnp.float32)
    blend = cover * face + (1.0 - cover) * orig
    new = jnp.clip(jnp.rint(blend), 0, 255).astype(jnp.uint8)
    return jnp.where(cover <= 0.0, frames, new)
