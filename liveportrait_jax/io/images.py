"""Still images in and out, always as HxWx3 uint8 RGB.

Decoding matches the reference (cv2.imread with IMREAD_COLOR): grayscale is expanded to 3 channels,
an alpha channel is dropped (not composited), 16-bit images are scaled to 8 bits, and a JPEG's EXIF
orientation tag is applied so phone photos come out upright; images without EXIF are unaffected.
Files are read as bytes and decoded with cv2.imdecode so non-ASCII paths work on every platform.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from .atomic import atomic_write_path
from .errors import InputError, OutputError, check_input_file, describe


def load_image(path: os.PathLike | str) -> np.ndarray:
    """Read an image file as an HxWx3 uint8 RGB array; raise InputError naming the file on failure."""
    name = describe(path)
    p = check_input_file(path, 'image')
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as e:
        raise InputError(f'{name}: cannot read image file: {e}') from e
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as e:  # e.g. over OpenCV's pixel-count limit
        raise InputError(f'{name}: cannot decode image: {str(e).strip()}') from e
    if bgr is None:
        raise InputError(f'{name}: not a readable image (unknown format or corrupt data)')
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.shape[0] == 0 or bgr.shape[1] == 0:
        raise InputError(f'{name}: decoded to unexpected shape {bgr.shape}')
    return np.ascontiguousarray(bgr[..., ::-1])


def as_rgb_uint8(image: np.ndarray, what: str) -> np.ndarray:
    """Check that `image` is a uint8 HxWx3 (or HxW gray / HxWx4 RGBA) array and return it as HxWx3.

    Outputs must be uint8 on purpose: silently rescaling a float array would hide a [0,1] vs [0,255]
    mix-up upstream. `what` names the destination in the error.
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise OutputError(
            f'{what}: expected a uint8 image, got dtype {arr.dtype} '
            '(convert with np.clip(x * 255, 0, 255).astype(np.uint8) for [0,1] floats)'
        )
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise OutputError(f'{what}: expected an HxWx3 RGB image, got shape {np.shape(image)}')
    return np.ascontiguousarray(arr)


def save_image(path: os.PathLike | str, rgb: np.ndarray) -> str:
    """Write an RGB uint8 image; the format comes from the extension. Atomic: no partial file on error."""
    name = describe(path)
    rgb = as_rgb_uint8(rgb, name)
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if not ext:
        raise OutputError(
            f'{name}: no file extension, cannot choose an image format (use .png or .jpg)'
        )
    try:
        ok, buf = cv2.imencode(ext, rgb[..., ::-1])
    except cv2.error as e:
        raise OutputError(f'{name}: cannot encode image as {ext!r}: {str(e).strip()}') from e
    if not ok:
        raise OutputError(f'{name}: OpenCV failed to encode the image as {ext!r}')
    with atomic_write_path(path) as tmp:
        with open(tmp, 'wb') as f:
            f.write(buf.tobytes())
    return os.path.abspath(os.fspath(path))
