"""Device paste-back (ops/paste.py) against the host's cv2 paste-back (faces/crop.py::paste_back).

Natural frames (scikit-image's astronaut, 512x512, and a 720x1280 frame made from it), realistic
crops (cv2.warpAffine of the frame through similarity_o2c, then perturbed so that paste-back
changes pixels), several crop placements per batch: upright, rotated, partly outside the frame,
larger than the frame, a small face, one that misses the frame. The device result must be within
1 uint8 level of the host's and equal on at least 99.9 % of the pixels (in practice all but a
handful of pixels per million: the sampling positions are emulated exactly, only float32 sums
may round differently at exact .5 boundaries).
"""

import cv2
import jax
import numpy as np
import pytest
from skimage import data as skdata

from liveportrait_jax.faces.crop import (
    make_paste_back_mask,
    paste_back,
    similarity_o2c,
    warp_mask_to_original,
)
from liveportrait_jax.ops.paste import (
    decode_inverse_affine,
    inverse_affine,
    paste_back_batch,
    paste_window,
    warp_affine_bilinear,
)

CROP = 512

# (centre x, centre y, side in original pixels, roll in radians), per frame shape.
CASES = {
    (512, 512): [
        (256.0, 240.0, 300.0, 0.0),  # upright, inside
        (260.3, 250.8, 350.2, 0.4),  # rotated
        (60.0, 450.0, 300.0, -0.3),  # partly outside (bottom-left)
        (256.0, 256.0, 800.0, 0.9),  # larger than the frame
        (400.3, 120.7, 90.5, 0.1),  # small face
        (-600.0, 256.0, 200.0, 0.0),  # misses the frame entirely
    ],
    (720, 1280): [
        (640.0, 300.0, 450.0, 0.0),
        (700.6, 380.2, 500.7, -0.6),
        (1200.0, 80.0, 400.0, 0.2),  # partly outside (top-right)
        (640.0, 360.0, 1500.0, 0.3),  # larger than the frame
        (200.4, 600.9, 120.0, -1.2),
        (10.5, 700.5, 260.0, 2.5),  # upside down, in a corner
    ],
}


def _frame(hw):
    img = skdata.astronaut()
    if hw == img.shape[:2]:
        return img
    # 720x1280: the astronaut at full height next to a mirrored, squeezed copy.
    h, w = hw
    left = cv2.resize(img, (h, h), interpolation=cv2.INTER_LINEAR)
    right = cv2.resize(img[:, ::-1], (w - h, h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(np.concatenate([left, right], axis=1))


def _perturb(crop, i):
    """Make paste-back visible: blur, colour shift, invert (sharpest edges), sharpen."""
    kind = i % 4
    if kind == 0:
        return cv2.GaussianBlur(crop, (0, 0), 2.0)
    if kind == 1:
        return np.clip(crop.astype(np.int16) + np.array([25, -15, 10]), 0, 255).astype(np.uint8)
    if kind == 2:
        return 255 - crop
    blur = cv2.GaussianBlur(crop, (0, 0), 1.5).astype(np.float32)
    return np.clip(2.0 * crop - blur, 0, 255).astype(np.uint8)


def _setup(hw):
    frame = _frame(hw)
    M_o2c = np.stack([similarity_o2c(np.array([cx, cy]), s, a, CROP) for cx, cy, s, a in CASES[hw]])
    M_c2o = np.linalg.inv(M_o2c)
    crops = np.stack(
        [_perturb(cv2.warpAffine(frame, M[:2], (CROP, CROP)), i) for i, M in enumerate(M_o2c)]
    )
    return frame, M_c2o, crops


@pytest.fixture(scope='module')
def mask():
    return make_paste_back_mask(CROP)


@pytest.fixture(scope='module', params=sorted(CASES), ids=lambda hw: f'{hw[0]}x{hw[1]}')
def case(request, mask):
    frame, M_c2o, crops = _setup(request.param)
    refs = np.stack([paste_back(c, M, frame, mask) for c, M in zip(crops, M_c2o)])
    origins, window = paste_window(frame.shape[:2], M_c2o, CROP)
    inv = inverse_affine(M_c2o)
    frames = np.repeat(frame[None], len(crops), axis=0)
    out = np.asarray(paste_back_batch(crops, frames, inv, origins, mask, window=window))
    return dict(
        frame=frame,
        M_c2o=M_c2o,
        crops=crops,
        refs=refs,
        origins=origins,
        window=window,
        inv=inv,
        out=out,
    )


def test_inverse_affine_is_cv2s_inverse():
    _, M_c2o, _ = _setup((720, 1280))
    inv = inverse_affine(M_c2o)
    assert inv.shape == (len(M_c2o), 2, 3, 4) and inv.dtype == np.int32
    want = np.stack([cv2.invertAffineTransform(M[:2]) for M in M_c2o])
    # The encoding keeps 45 fraction bits of each coefficient times 1024: 2^-55 absolute.
    np.testing.assert_allclose(decode_inverse_affine(inv), want, rtol=0, atol=2.0**-54)
    # One (3, 3) map, or its (2, 3) rows, give the same encoding.
    np.testing.assert_array_equal(inverse_affine(M_c2o[1]), inv[1:2])
    np.testing.assert_array_equal(inverse_affine(M_c2o[1, :2]), inv[1:2])
    with pytest.raises(ValueError, match='outside the range'):
        inverse_affine(np.diag([0.001, 0.001, 1.0]))  # a 0.5 px crop side


def test_paste_window_covers_support_inside_frame(mask):
    for hw in CASES:
        frame, M_c2o, _ = _setup(hw)
        H, W = hw
        origins, window = paste_window(hw, M_c2o, CROP)
        wh, ww = window
        assert isinstance(wh, int) and isinstance(ww, int)
        assert 1 <= wh <= H and 1 <= ww <= W
        assert origins.shape == (len(M_c2o), 2) and origins.dtype == np.int32
        assert np.all(origins >= 0)
        assert np.all(origins[:, 0] + wh <= H) and np.all(origins[:, 1] + ww <= W)
        for (y0, x0), M in zip(origins, M_c2o):
            # A mask of ones has the largest support cv2 can give; the soft mask's is inside it.
            for m in (np.ones((CROP, CROP), np.float32), mask):
                support = warp_mask_to_original(m, M, hw) > 0
                outside = support.copy()
                outside[y0 : y0 + wh, x0 : x0 + ww] = False
                assert not outside.any()
    # The frame-sized crop and the 1500 px one make the window span the frame on that axis.
    _, M_c2o, _ = _setup((720, 1280))
    assert paste_window((720, 1280), M_c2o, CROP)[1][0] == 720


def test_paste_back_batch_matches_host(case):
    out, refs = case['out'], case['refs']
    assert out.shape == refs.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(np.int16) - refs.astype(np.int16))
    equal = float((diff == 0).mean())
    print(f'\nmax |diff| {diff.max()}, equal {equal:.7f}, differing {int((diff > 0).sum())}')
    assert diff.max() <= 1
    assert equal >= 0.999
    # Paste-back changed something in every case but the crop that misses the 512x512 frame.
    changed = (refs != case['frame'][None]).any(axis=(1, 2, 3))
    assert changed.sum() >= len(changed) - 1


def test_untouched_pixels_are_bit_identical(case, mask):
    frame, out = case['frame'], case['out']
    wh, ww = case['window']
    for b, ((y0, x0), M) in enumerate(zip(case['origins'], case['M_c2o'])):
        outside = np.ones(frame.shape[:2], bool)
        outside[y0 : y0 + wh, x0 : x0 + ww] = False
        np.testing.assert_array_equal(out[b][outside], frame[outside])
        zero = warp_mask_to_original(mask, M, frame.shape[:2]) <= 0
        np.testing.assert_array_equal(out[b][zero], frame[zero])
        if zero.all():  # the crop that misses the frame leaves it as it was
            np.testing.assert_array_equal(out[b], frame)


def test_broadcast_single_frame(case, mask):
    frame = case['frame']
    out1 = np.asarray(
        paste_back_batch(
            case['crops'], frame[None], case['inv'], case['origins'], mask, window=case['window']
        )
    )
    assert out1.shape == case['out'].shape
    np.testing.assert_array_equal(out1, case['out'])


def test_float_matrix_is_accepted_but_approximate(case, mask):
    # A float32 inverse runs the same kernel; only its own rounding separates it from cv2.
    inv32 = decode_inverse_affine(case['inv']).astype(np.float32)
    frames = np.repeat(case['frame'][None], len(inv32), axis=0)
    out = np.asarray(
        paste_back_batch(case['crops'], frames, inv32, case['origins'], mask, window=case['window'])
    )
    diff = np.abs(out.astype(np.int16) - case['refs'].astype(np.int16))
    assert (diff == 0).mean() >= 0.999


def _float_image(seed=0):
    rng = np.random.default_rng(seed)
    img = skdata.astronaut()[::2, 1::2].astype(np.float32)  # 256x256, not square after crop
    img = img[:, :200] + rng.uniform(-0.5, 0.5, img[:, :200].shape).astype(np.float32)
    return np.ascontiguousarray(img)


@pytest.mark.parametrize(
    'scale,angle,shift',
    [(1.0, 0.0, (0.0, 0.0)), (1.37, 0.3, (40.2, -13.7)), (0.61, -2.2, (300.5, 260.1))],
)
def test_warp_affine_bilinear_matches_cv2(scale, angle, shift):
    img = _float_image()
    H, W = 330, 410
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    M = np.array([[c, -s, shift[0]], [s, c, shift[1]], [0.0, 0.0, 1.0]])  # source -> destination
    want = cv2.warpAffine(img, M[:2], (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
    inv = inverse_affine(M)[0]
    warp = jax.jit(warp_affine_bilinear, static_argnums=3)
    got = np.asarray(warp(img, inv, np.array([0, 0], np.int32), (H, W)))
    # Same sampling positions and weights; only float32 sums may round differently (the values
    # are up to 256, so an ulp is 1.5e-5; seen: <= 4.6e-5, 3 ulps).
    assert np.abs(got - want).max() <= 1e-4
    assert (got != 0).any()
    # A window away from the origin samples the same pixels.
    sub = np.asarray(warp(img, inv, np.array([37, 91], np.int32), (100, 150)))
    np.testing.assert_allclose(sub, want[37:137, 91:241], rtol=0, atol=1e-4)


def test_warp_affine_bilinear_ties_round_half_to_even():
    # Dyadic coefficients make cv2's products land exactly on .5 in units of 1/1024 px, where
    # rounding half up instead of half to even would move samples by 1/32 px.
    img = _float_image(1)
    inv = np.array(
        [[0.5 + 2.0**-11, 2.0**-12, 3.0 + 2.0**-11], [-(2.0**-11), 0.75, 5.5 + 2.0**-12]]
    )
    H, W = 300, 380
    want = cv2.warpAffine(
        img, inv, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0
    )
    warp = jax.jit(warp_affine_bilinear, static_argnums=3)
    got = np.asarray(warp(img, inv.astype(np.float32), np.array([0, 0], np.int32), (H, W)))
    assert np.abs(got - want).max() <= 1e-4
