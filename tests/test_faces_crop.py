"""Reference-style crops: shapes, invertible transforms, rotation handling, box smoothing, paste back."""

import numpy as np
import pytest

from liveportrait_jax.faces import crop as C
from liveportrait_jax.faces.landmarks import detect_face


@pytest.fixture(scope='module')
def astro():
    from skimage import data

    img = data.astronaut()
    return img, detect_face(img, source_name='astronaut.png').landmarks


def test_source_crop_shapes_and_inverse(astro):
    img, lm = astro
    r = C.crop_source_image(img, lm)
    assert r.image.shape == (512, 512, 3) and r.image.dtype == np.uint8
    assert r.image_256.shape == (256, 256, 3) and r.image_256.dtype == np.uint8
    assert r.M_o2c.shape == r.M_c2o.shape == (3, 3)
    assert np.allclose(r.M_c2o @ r.M_o2c, np.eye(3), atol=1e-9)
    assert r.landmarks.shape == (478, 2)
    # Crop landmarks map back onto the original landmarks.
    back = C.transform_points(r.landmarks, r.M_c2o)
    assert np.abs(back - lm).max() < 1e-3
    assert np.allclose(r.landmarks_256, r.landmarks / 2, atol=1e-4)
    # The crop really is the warp of the original: a landmark's colour survives the round trip.
    p = np.round(r.landmarks[1]).astype(int)  # nose tip, in crop pixels
    q = np.round(lm[1]).astype(int)
    assert np.abs(r.image[p[1], p[0]].astype(int) - img[q[1], q[0]].astype(int)).max() < 40


def test_source_crop_geometry(astro):
    img, lm = astro
    r = C.crop_source_image(img, lm)
    eyes_l = r.landmarks[list(C.LEFT_EYE_CENTER)].mean(0)
    eyes_r = r.landmarks[list(C.RIGHT_EYE_CENTER)].mean(0)
    # Rotation levels the eye/mouth axis: the eyes sit on one row, the face in the middle column.
    assert abs(eyes_l[1] - eyes_r[1]) < 2.0
    assert abs((eyes_l[0] + eyes_r[0]) / 2 - 256) < 20
    # scale 2.3: the landmark extent (brow to chin) is 512 / 2.3 ~ 223 crop pixels tall.
    pts = r.landmarks[C.CROP_LANDMARK_INDICES]
    ext = (pts.max(0) - pts.min(0)).max()
    assert abs(ext - 512 / 2.3) < 3
    # vy -0.125 moves the box up the face by 1/8 of its side: face centre 64 px below the middle.
    mid = (pts.max(0) + pts.min(0)) / 2
    assert abs(mid[1] - (256 + 0.125 * 512)) < 3
    # Without rotation the crop is axis-aligned.
    r0 = C.crop_source_image(img, lm, flag_do_rot=False)
    assert r0.angle == 0.0 and np.allclose(r0.M_o2c[0, 1], 0) and np.allclose(r0.M_o2c[1, 0], 0)


def test_rotated_input_gives_the_same_crop(astro):
    import cv2

    img, lm = astro
    R = cv2.getRotationMatrix2D((256, 256), 20, 1.0)  # 20 degrees counter-clockwise
    rot = cv2.warpAffine(img, R, (512, 512))
    lm_rot = C.transform_points(lm, R)
    a = C.crop_source_image(img, lm)
    b = C.crop_source_image(rot, lm_rot)
    assert abs(np.degrees(b.angle - a.angle) + 20) < 0.5
    assert np.abs(a.landmarks - b.landmarks).max() < 0.05
    diff = np.abs(a.image[128:384, 128:384].astype(int) - b.image[128:384, 128:384].astype(int))
    assert diff.mean() < 6


def test_crop_by_box_and_expand(astro):
    img, _ = astro
    box = (100, 50, 300, 250)
    r = C.crop_by_box(img, box, dsize=256)
    corners = C.transform_points(np.array([[100, 50], [300, 250]], float), r.M_o2c)
    assert np.allclose(corners, [[0, 0], [256, 256]], atol=1e-4)
    assert r.image.shape == (256, 256, 3)
    assert np.array_equal(r.image[10:-10, 10:-10], r.image_256[10:-10, 10:-10])
    # A non-square box becomes the enclosing square around the same centre.
    r2 = C.crop_by_box(img, (100, 50, 300, 150), dsize=200)
    assert r2.size == 200 and np.allclose(r2.center, [200, 100])
    e = C.expand_box((0, 0, 100, 80), scale=2.0, vy_ratio=-0.1)
    assert np.allclose(e, [-50, -80, 150, 120])


def _jittered_sequence(lm, n=40, sigma=2.0, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack(
        [
            lm + rng.normal(0, sigma, size=(1, 2)) + rng.normal(0, 0.5, size=lm.shape)
            for _ in range(n)
        ]
    ).astype(np.float32)


def test_driving_crops_smoothing(astro):
    img, lm = astro
    seq = _jittered_sequence(lm)
    frames = [img] * len(seq)
    raw = C.crop_driving_frames(frames, seq, smoothing='none')
    glob = C.crop_driving_frames(frames, seq)  # reference: one mean box
    avg = C.crop_driving_frames(frames, seq, smoothing=5)
    T = len(seq)
    assert glob.images.shape == (T, 512, 512, 3) and glob.images_256.shape == (T, 256, 256, 3)
    assert glob.landmarks.shape == (T, 478, 2) and glob.M_c2o.shape == (T, 3, 3)
    # No rotation in the driving crop.
    assert np.allclose(glob.M_o2c[:, 0, 1], 0)

    def jitter(b):
        return np.abs(np.diff(b.boxes, axis=0)).mean()

    assert jitter(raw) > 1.0
    assert jitter(glob) == 0.0
    assert jitter(avg) < 0.5 * jitter(raw)
    assert np.allclose(glob.boxes[0], raw.boxes_raw.mean(0))
    # Crop landmarks map back to the frame landmarks.
    back = C.transform_points(glob.landmarks[7], glob.M_c2o[7])
    assert np.abs(back - seq[7]).max() < 1e-3
    # Driving settings: the box is scale 2.2 around the face, no bigger than the source crop.
    src = C.crop_source_image(img, lm)
    assert glob.boxes[0, 2] - glob.boxes[0, 0] < src.size


def test_driving_crop_rejects_mismatch(astro):
    img, lm = astro
    with pytest.raises(ValueError, match='2 frames but 3'):
        C.crop_driving_frames([img, img], np.stack([lm] * 3))
    with pytest.raises(ValueError, match='smoothing'):
        C.smooth_boxes(np.zeros((3, 4)), 'wobbly')


def test_paste_back_mask_shape():
    m = C.make_paste_back_mask(512)
    assert m.shape == (512, 512) and m.dtype == np.float32
    assert m[256, 256] == 1.0 and m[0, 0] == 0.0 and m[256, 0] < 0.05
    assert np.allclose(m, m[::-1]) and np.allclose(m, m.T)
    row = m[256, :256]
    assert np.all(np.diff(row) >= 0)  # rises monotonically towards the middle
    assert 0.8 < (m > 0.999).mean() < 0.92  # keeps most of the crop


def test_paste_back_writes_only_inside_mask(astro):
    img, lm = astro
    r = C.crop_source_image(img, lm)
    white = np.full_like(r.image, 255)
    out = C.paste_back(white, r.M_c2o, img)
    mask_o = C.warp_mask_to_original(C.make_paste_back_mask(512), r.M_c2o, img.shape[:2])
    outside = mask_o <= 0
    assert outside.any() and (~outside).any()
    assert np.array_equal(out[outside], img[outside])
    changed = np.any(out != img, axis=-1)
    assert not np.any(changed & outside)
    full = mask_o >= 0.999
    assert np.all(out[full] == 255)
    # The precomputed original-space mask gives the same result.
    assert np.array_equal(out, C.paste_back(white, r.M_c2o, img, mask_original=mask_o))
    # A crop pasted back unchanged barely alters the image (only resampling blur).
    same = C.paste_back(r.image, r.M_c2o, img)
    assert np.abs(same.astype(int) - img.astype(int)).mean() < 1.5


def test_rescale_c2o(astro):
    img, lm = astro
    r = C.crop_source_image(img, lm)
    M256 = C.rescale_c2o(r.M_c2o, 512, 256)
    p = C.transform_points(r.landmarks_256, M256)
    assert np.abs(p - lm).max() < 1e-3


# --- the crop defaults' one home and the AnimateOptions schema ----------------------------------


def test_crop_defaults_have_one_home():
    import inspect

    from liveportrait_jax.pipeline.options import AnimateOptions

    d = AnimateOptions()
    src, drv = C.SOURCE_CROP, C.DRIVING_CROP
    assert (
        (d.dsize, d.scale, d.vx_ratio, d.vy_ratio, d.flag_do_rot)
        == (src.dsize, src.scale, src.vx_ratio, src.vy_ratio, src.flag_do_rot)
        == (512, 2.3, 0.0, -0.125, True)
    )  # the reference's CLI defaults
    assert (
        (d.scale_crop_driving_video, d.vx_ratio_crop_driving_video, d.vy_ratio_crop_driving_video)
        == (drv.scale, drv.vx_ratio, drv.vy_ratio)
        == (2.2, 0.0, -0.1)
    )
    for fn, settings, names in (
        (C.crop_source_image, src, ('dsize', 'scale', 'vx_ratio', 'vy_ratio', 'flag_do_rot')),
        (C.crop_driving_frames, drv, ('dsize', 'scale', 'vx_ratio', 'vy_ratio')),
    ):
        params = inspect.signature(fn).parameters
        assert all(params[n].default == getattr(settings, n) for n in names), fn.__name__


def test_every_option_has_help_and_is_checked():
    from liveportrait_jax.pipeline.options import SCHEMA, AnimateOptions

    assert set(SCHEMA) == {f.name for f in __import__('dataclasses').fields(AnimateOptions)}
    for name, field in SCHEMA.items():
        meta = field.metadata
        assert isinstance(meta['help'], str) and len(meta['help']) > 10, name
        if meta['min'] is not None:  # half-open ranges read '>= min'
            with pytest.raises(ValueError, match=rf'{name} must be (in \[.*\]|>= \S+), got'):
                AnimateOptions(**{name: meta['min'] - 1})
        if meta['max'] is not None:
            with pytest.raises(ValueError, match=rf'{name} must be in \[.*\], got'):
                AnimateOptions(**{name: meta['max'] + 1})
        if meta['choices']:
            with pytest.raises(ValueError, match=f'{name} must be one of'):
                AnimateOptions(**{name: 'nonsense'})
        if field.type is bool:
            with pytest.raises(ValueError, match=f'{name} must be True or False'):
                AnimateOptions(**{name: 'yes'})
    with pytest.raises(ValueError, match=r'dsize must be in \[64, 2048\], got 32'):
        AnimateOptions(dsize=32)
    with pytest.raises(ValueError, match='dsize must be an integer'):
        AnimateOptions(dsize=256.5)
    with pytest.raises(ValueError, match='scale must be a number'):
        AnimateOptions(scale='big')
    for box in ((1, 2, 3), (10, 10, 5, 20)):
        with pytest.raises(ValueError, match='crop_box must be x0,y0,x1,y1'):
            AnimateOptions(crop_box=box)
    with pytest.raises(ValueError, match='driving_multiplier'):
        AnimateOptions().replace(driving_multiplier=-1.0)  # replace validates too
    AnimateOptions(
        dsize=np.int64(256),
        scale=np.float32(2.0),
        flag_stitching=np.bool_(False),
        crop_box=(10, 20, 110, 140),
    )


def test_cli_flags_from_the_schema():
    import argparse

    from liveportrait_jax.pipeline import options as O

    SCHEMA, AnimateOptions, parse_box = O.SCHEMA, O.AnimateOptions, O.parse_box
    parser = argparse.ArgumentParser()
    O.add_option_arguments(parser)
    actions = {a.dest: a for a in parser._actions}
    for name, field in SCHEMA.items():  # every flag: its help, default and range
        text = actions[name].help
        assert text.startswith(field.metadata['help']), name
        assert f'(default: {field.default}' in text, name
        if field.metadata['min'] is not None:
            assert f'range [{field.metadata["min"]}, ' in text, name
        assert '--' + name.replace('_', '-') in actions[name].option_strings
    assert O.options_from_args(parser.parse_args([])) == AnimateOptions()
    args = parser.parse_args(
        [
            '--no-flag-stitching',
            '--flag-write-gif',
            '--dsize',
            '256',
            '--crop-box',
            '10,20,110,140',
            '--animation-region',
            'lip',
        ]
    )
    o = O.options_from_args(args, vy_ratio=0.0)
    assert (
        o.flag_stitching,
        o.flag_write_gif,
        o.dsize,
        o.crop_box,
        o.animation_region,
        o.vy_ratio,
    ) == (False, True, 256, (10.0, 20.0, 110.0, 140.0), 'lip', 0.0)
    for bad in (
        ['--dsize', '32'],
        ['--dsize', '2.5'],
        ['--scale', 'x'],
        ['--crop-box', '1,2,3'],
        ['--driving-option', 'other'],
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    assert parse_box(' 10, 20, 110, 140 ') == (10.0, 20.0, 110.0, 140.0)
    assert parse_box('') is None and parse_box(None) is None
    with pytest.raises(ValueError, match='crop_box'):
        parse_box('1,2,x,4')
