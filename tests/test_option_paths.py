"""Every animation option the e2e fixtures cannot cover, given to the public entry points and
followed to what it must change (and what it must not).

Motion options: the driving keypoints that `animate_frames` hands to W must equal the per-frame
transcription of the reference (tests/reference_motion.py) computed with the options the TEST
asked for, from the pipeline's own first-pass motion and eye/lip ratios (captured on the way). Each
case also checks that its options move the transcription on these inputs, so an option dropped or
misapplied between the entry and the keypoints cannot pass. Crop, paste-back, size, smoothing and
input options are checked against the geometry they promise.

Tiny RANDOM weights, scikit-image's astronaut (MediaPipe finds her face) and a clip made from it.
"""

import cv2
import numpy as np
import pytest
from reference_motion import reference_keypoints

from liveportrait_jax.pipeline import AnimateOptions, animate_frames
from liveportrait_jax.pipeline import plan as plan_lib
from liveportrait_jax.pipeline.demo_media import astronaut, synth_driving_frames
from liveportrait_jax.pipeline.motion import source_video_targets
from liveportrait_jax.pipeline.options import SCHEMA

N = 4  # driving frames
MOTION = ('R', 'exp', 't', 'scale', 'kp')
# The vectorised composition against the transcription (tests/test_motion.py measures ~1e-6).
KEYPOINT_TOL = 2e-5
# An option "matters" on these inputs when it moves some keypoint by more than this.
MATTERS = 1e-3


@pytest.fixture(scope='module')
def media():
    img = astronaut()
    return dict(
        image=img[None],
        video=np.stack([np.roll(img, 4 * i, axis=1) for i in range(3)]),
        driving=synth_driving_frames(N),
        driving_image=synth_driving_frames(5)[2:3],
    )


@pytest.fixture
def captured(monkeypatch):
    """The Plans the first pass produces (source and driving motion, ratios, crop matrices)."""
    plans = []
    real = plan_lib.compose_plan

    def spy(*args, **kwargs):
        plans.append(real(*args, **kwargs))
        return plans[-1]

    monkeypatch.setattr(plan_lib, 'compose_plan', spy)
    return plans


def _run(models, captured, source, driving, options, **kwargs):
    captured.clear()
    result = animate_frames(models, source, driving, options, label='', **kwargs)
    return result, captured[-1]


def _transcribed(models, plan, options, lip_array=None):
    """The reference's driving keypoints for `plan`'s inputs under `options`."""
    src, drv, n = plan.source, plan.driving, plan.n_frames
    rows = slice(0, n) if src.is_video else slice(0, 1)
    src_m = {k: src.motion[k][rows] for k in MOTION}
    drv_m = {k: drv.motion[k][:n] for k in MOTION}
    if not drv.is_video:  # a driving image: its one row for every frame, as the pipeline does
        drv_m = {k: np.repeat(v[:1], n, axis=0) for k, v in drv_m.items()}
    smooth = {'exp': None, 'R': None}
    if src.is_video:
        smooth = source_video_targets(
            src_m,
            drv_m,
            relative=options.flag_relative_motion,
            pose=options.animation_region in ('all', 'pose'),
            driving_is_video=drv.is_video,
            lip_array=lip_array,
            observation_variance=options.driving_smooth_observation_variance,
        )

    def s_fn(fn):
        return lambda a, b: np.asarray(fn(a[None], np.asarray(b, np.float32)[None]))[0]

    cut = lambda a: None if a is None else a[:n]  # noqa: E731
    return reference_keypoints(
        src_m,
        drv_m,
        src.motion['x_s'][rows],
        options,
        src_video=src.is_video,
        drv_video=drv.is_video,
        lip_array=None if lip_array is None else np.asarray(lip_array, np.float32).reshape(21, 3),
        smooth_exp=smooth['exp'],
        smooth_R=smooth['R'],
        stitch=s_fn(models.stitching),
        eye=s_fn(models.retarget_eye),
        lip=s_fn(models.retarget_lip),
        c_s_eyes=cut(src.eye),
        c_s_lip=cut(src.lip),
        c_d_eyes=cut(drv.eye),
        c_d_lip=cut(drv.lip),
    )


def _under_test(name, changes):
    """{field: default} for the option(s) a case is about: the one it is named after, else all."""
    keys = [name] if name in changes else list(changes)
    return {k: SCHEMA[k].default for k in keys}


# driving_option is left out: expression-friendly rescales the motion by the ratio of the convex
# hulls of x_s and the first frame's driving keypoints, which relative motion makes equal to x_s,
# so the reference's two choices give the same keypoints (to rounding) on every input it accepts.
MOTION_CASES = {
    'driving_multiplier': dict(driving_multiplier=1.7),
    'flag_eye_retargeting': dict(flag_eye_retargeting=True),
    'eyes_retargeting_multiplier': dict(flag_eye_retargeting=True, eyes_retargeting_multiplier=3.0),
    'flag_lip_retargeting': dict(flag_lip_retargeting=True),
    'lip_retargeting_multiplier': dict(flag_lip_retargeting=True, lip_retargeting_multiplier=0.3),
    'eye_and_lip_no_stitching': dict(
        flag_eye_retargeting=True, flag_lip_retargeting=True, flag_stitching=False
    ),
    'flag_normalize_lip': dict(flag_normalize_lip=True),
    # the astronaut's lips are open ~0.16: a threshold above that leaves them as they are
    'lip_normalize_threshold': dict(flag_normalize_lip=True, lip_normalize_threshold=0.2),
    'absolute_eye_retargeting': dict(flag_eye_retargeting=True, flag_relative_motion=False),
}


def _check_keypoints(models, captured, source, driving, name, changes):
    """The entry's keypoints are the transcription's under `changes`, and each option under test
    matters here: without it the keypoints would be elsewhere. Returns the result."""
    options = AnimateOptions(**changes)
    result, plan = _run(models, captured, source, driving, options)
    want = _transcribed(models, plan, options)
    np.testing.assert_allclose(result.x_d, want, rtol=0, atol=KEYPOINT_TOL)
    for key, default in _under_test(name, changes).items():
        without = _transcribed(models, plan, options.replace(**{key: default}))
        assert np.abs(without - want).max() > MATTERS, f'{key} does not move the keypoints'
    return result


@pytest.mark.parametrize('name', list(MOTION_CASES))
def test_motion_option_reaches_the_keypoints(models, captured, media, name):
    _check_keypoints(models, captured, media['image'], media['driving'], name, MOTION_CASES[name])


SOURCE_VIDEO_CASES = {
    'flag_source_video_eye_retargeting': dict(flag_source_video_eye_retargeting=True),
    # the astronaut's eyes are open ~0.37: above the threshold 0.5 they count as closed
    'source_video_eye_retargeting_threshold': dict(
        flag_source_video_eye_retargeting=True, source_video_eye_retargeting_threshold=0.5
    ),
    'driving_smooth_observation_variance': dict(driving_smooth_observation_variance=1e-3),
    'source_video_normalize_lip': dict(flag_normalize_lip=True, flag_stitching=False),
}


@pytest.mark.parametrize('name', list(SOURCE_VIDEO_CASES))
def test_source_video_option_reaches_the_keypoints(models, captured, media, name):
    changes = SOURCE_VIDEO_CASES[name]
    result = _check_keypoints(models, captured, media['video'], media['driving'], name, changes)
    assert result.n_frames == 3  # the shorter input


def test_lip_array_is_the_image_driving_reference(models, captured, media):
    """An image drives relative to the neutral-lip expression given (the reference's
    lip_array), not to the source's own expression."""
    lip_array = np.random.default_rng(0).normal(size=(1, 21, 3)).astype(np.float32) * 0.02
    options = AnimateOptions()
    result, plan = _run(
        models, captured, media['image'], media['driving_image'], options, lip_array=lip_array
    )
    want = _transcribed(models, plan, options, lip_array=lip_array)
    np.testing.assert_allclose(result.x_d, want, rtol=0, atol=KEYPOINT_TOL)
    without, _ = _run(models, captured, media['image'], media['driving_image'], options)
    assert np.abs(without.x_d - result.x_d).max() > MATTERS


# --- crops -------------------------------------------------------------------------------------


def _source_crop(plan, dsize):
    """(centre, side, roll in degrees) of the (first) source crop."""
    M = plan.source.M_o2c[0]
    s = np.hypot(M[0, 0], M[0, 1])  # crop pixels per source pixel
    centre = (np.linalg.inv(M) @ [dsize / 2, dsize / 2, 1.0])[:2]
    return centre, dsize / s, np.degrees(np.arctan2(M[0, 1], M[0, 0]))


@pytest.fixture(scope='module')
def tilted(media):
    """The astronaut rolled by 12 degrees about her face, so that a crop's rotation shows."""
    M = cv2.getRotationMatrix2D((240.0, 140.0), 12.0, 1.0)
    return cv2.warpAffine(astronaut(), M, (512, 512), borderMode=cv2.BORDER_REFLECT)[None]


def test_source_crop_options(models, captured, media, tilted):
    drv = media['driving'][:2]
    base = AnimateOptions()
    _, plan = _run(models, captured, tilted, drv, base)
    c0, side0, roll0 = _source_crop(plan, base.dsize)
    assert abs(abs(roll0) - 12.0) < 3.0  # flag_do_rot (default on): the crop follows the face

    _, plan = _run(models, captured, tilted, drv, base.replace(flag_do_rot=False))
    c, side, roll = _source_crop(plan, base.dsize)
    assert roll == 0.0 and abs(side - side0) < 1e-6 * side0

    _, plan = _run(models, captured, tilted, drv, base.replace(scale=1.8))
    _, side, _ = _source_crop(plan, base.dsize)
    assert side == pytest.approx(side0 * 1.8 / base.scale, rel=1e-6)

    # the face's axes in the source (faces.crop.crop_rect_from_landmarks): ux across, uy down
    ux = np.array([np.cos(np.radians(roll0)), np.sin(np.radians(roll0))])
    uy = np.array([-ux[1], ux[0]])
    _, plan = _run(models, captured, tilted, drv, base.replace(vx_ratio=0.1))
    c, _, _ = _source_crop(plan, base.dsize)
    np.testing.assert_allclose(c - c0, ux * 0.1 * side0, atol=1e-3 * side0)

    _, plan = _run(models, captured, tilted, drv, base.replace(vy_ratio=0.05))
    c, _, _ = _source_crop(plan, base.dsize)
    np.testing.assert_allclose(c - c0, uy * (0.05 - base.vy_ratio) * side0, atol=1e-3 * side0)

    result, plan = _run(models, captured, tilted, drv, base.replace(dsize=256))
    c, side, roll = _source_crop(plan, 256)
    np.testing.assert_allclose(c, c0, atol=1e-6 * side0)
    assert side == pytest.approx(side0, rel=1e-6) and roll == pytest.approx(roll0)


def test_crop_box_is_the_source_crop(models, captured, media):
    box = (120.0, 30.0, 360.0, 270.0)
    _, plan = _run(
        models, captured, media['image'], media['driving'][:2], AnimateOptions(crop_box=box)
    )
    c, side, roll = _source_crop(plan, 512)
    np.testing.assert_allclose(c, [240.0, 150.0], atol=1e-6)
    assert side == pytest.approx(240.0) and roll == 0.0


def _driving_box(plan, dsize):
    """(centre, side in frame pixels) of the driving crop box: one box for every frame (the
    reference's mean box)."""
    M = plan.driving.geometry.M_o2c
    assert np.ptp(M, axis=0).max() == 0
    return (np.linalg.inv(M[0]) @ [dsize / 2, dsize / 2, 1.0])[:2], dsize / M[0, 0, 0]


def test_driving_crop_options(models, captured, media):
    src, drv, dsize = media['image'], media['driving'], SCHEMA['dsize'].default
    base = AnimateOptions(flag_crop_driving_video=True)
    _, plan = _run(models, captured, src, drv, AnimateOptions())
    assert plan.driving.geometry is None or plan.driving.geometry.M_o2c is None  # square: resized
    _, plan = _run(models, captured, src, drv, base)
    c0, side0 = _driving_box(plan, dsize)
    _, plan = _run(models, captured, src, drv, base.replace(scale_crop_driving_video=1.5))
    c, side = _driving_box(plan, dsize)
    assert side == pytest.approx(side0 * 1.5 / base.scale_crop_driving_video, rel=1e-6)
    # Each frame's box moves along that frame's face axes (the clip rolls by up to 8 degrees),
    # then the boxes are averaged: the mean box moves by the ratio times the side, about along
    # the image axis.
    for key, value, axis in (('vx', 0.1, 0), ('vy', 0.0, 1)):
        field = f'{key}_ratio_crop_driving_video'
        _, plan = _run(models, captured, src, drv, base.replace(**{field: value}))
        c, _ = _driving_box(plan, dsize)
        shift = (value - getattr(base, field)) * side0
        assert np.linalg.norm(c - c0) == pytest.approx(abs(shift), rel=0.02), field
        assert np.sign(c - c0)[axis] == np.sign(shift) and abs(c - c0)[1 - axis] < 0.1 * abs(shift)
    # A driving video that is not square is cropped whether asked or not.
    wide = np.pad(drv, ((0, 0), (0, 0), (60, 60), (0, 0)), mode='edge')
    _, plan = _run(models, captured, src, wide, AnimateOptions())
    assert plan.driving.geometry.M_o2c is not None


def test_face_index_chooses_that_face(models, captured, media):
    """Two faces, the right one smaller: face 0 is the larger (left), face_index=1 the other."""
    face = np.ascontiguousarray(astronaut()[0:300, 90:390])
    img = np.full((400, 760, 3), 200, np.uint8)
    img[20:320, 20:320] = face
    img[60:300, 440:680] = cv2.resize(face, (240, 240))
    # face_index picks the face of the driving input too: the photo drives itself.
    for index, (x_lo, x_hi) in ((0, (20, 320)), (1, (440, 680))):
        _, plan = _run(models, captured, img[None], img[None], AnimateOptions(face_index=index))
        centre, _, _ = _source_crop(plan, SCHEMA['dsize'].default)
        assert x_lo < centre[0] < x_hi, (index, centre)


def test_animals_crop_the_cat_face(models, captured, media):
    from skimage import data

    from liveportrait_jax.faces.animals import detect_cat_face

    cat = np.ascontiguousarray(data.chelsea())
    x0, y0, x1, y1 = detect_cat_face(cat)
    _, plan = _run(
        models, captured, cat[None], media['driving'][:2], AnimateOptions(), animals=True
    )
    centre, side, roll = _source_crop(plan, SCHEMA['dsize'].default)
    assert x0 < centre[0] < x1 and y0 - 0.2 * (y1 - y0) < centre[1] < y1 and roll == 0.0
    assert side > max(x1 - x0, y1 - y0)  # the face box widened to a portrait crop


# --- outputs: paste-back and sizes ----------------------------------------------------------------


def test_pasteback_puts_the_crop_into_the_source(models, captured, media):
    """Paste-back: frames at the source's size, the source untouched outside the crop. Without
    it: the animated crop at dsize."""
    src = np.pad(media['image'], ((0, 0), (0, 200), (0, 300), (0, 0)), mode='edge')  # 712 x 812
    options = AnimateOptions(dsize=256)
    pasted, plan = _run(models, captured, src, media['driving'][:2], options)
    assert pasted.frames.shape == (2, 712, 812, 3)
    # A corner block outside the crop (the crop's corners mapped into the source are elsewhere).
    corners = (np.linalg.inv(plan.source.M_o2c[0]) @ np.array([[0, 256, 0, 256], [0, 0, 256, 256], [1, 1, 1, 1]]))[:2]  # fmt: skip
    assert corners[0].max() < 700 and corners[1].max() < 640
    assert np.array_equal(
        pasted.frames[:, 660:, 760:], np.broadcast_to(src[0, 660:, 760:], (2, 52, 52, 3))
    )
    assert not np.array_equal(pasted.frames[:, 100:300, 150:350], np.broadcast_to(src[0, 100:300, 150:350], (2, 200, 200, 3)))  # fmt: skip
    crops, _ = _run(
        models, captured, src, media['driving'][:2], options.replace(flag_pasteback=False)
    )
    assert crops.frames.shape == (2, 256, 256, 3)


@pytest.mark.parametrize(
    'changes,shape',
    [
        (dict(source_max_dim=300), (226, 300)),  # 600 x 452 scaled to 300 across, even sides
        (dict(source_division=16), (448, 592)),  # sides cut to multiples of 16
        (dict(source_max_dim=0, source_division=1), (452, 600)),
    ],
)
def test_source_size_options(models, captured, media, changes, shape):
    src = np.pad(media['image'], ((0, 0), (0, 0), (0, 88), (0, 0)), mode='edge')[:, :452]
    result, _ = _run(models, captured, src, media['driving'][:1], AnimateOptions(**changes))
    assert result.frames.shape[1:3] == shape


def _jitter(x):
    return float(np.abs(np.diff(np.asarray(x), 2, axis=0)).mean())


def test_motion_smoothing_strength(models, captured):
    """Kalman smoothing: stronger is steadier; the strength reaches the smoother."""
    rng = np.random.default_rng(0)
    frames = synth_driving_frames(12)
    noisy = np.clip(frames + rng.normal(0, 6, frames.shape), 0, 255).astype(np.uint8)
    src = astronaut()[None]
    runs = {
        s: _run(
            models,
            captured,
            src,
            noisy,
            AnimateOptions(motion_smoothing='kalman', motion_smoothing_strength=s),
        )[0].x_d  # fmt: skip
        for s in (1.0, 8.0)
    }
    raw = _run(models, captured, src, noisy, AnimateOptions())[0].x_d
    assert _jitter(runs[8.0]) < 0.8 * _jitter(runs[1.0]) < 0.8 * _jitter(raw)


def test_max_frames_reads_the_first_frames(models, tmp_path, media):
    from liveportrait_jax.io import VideoWriter, save_image
    from liveportrait_jax.pipeline import animate

    src, drv = str(tmp_path / 'src.png'), str(tmp_path / 'drv.mp4')
    save_image(src, media['image'][0])
    with VideoWriter(drv, 10) as w:
        for f in synth_driving_frames(6):
            w.write(f)
    opts = AnimateOptions(flag_write_concat=False)
    kw = dict(label='', progress=False)
    full = animate(models, src, drv, str(tmp_path / 'full'), opts, **kw)
    cut = animate(models, src, drv, str(tmp_path / 'cut'), opts, max_frames=3, **kw)
    assert (full.n_frames, cut.n_frames) == (6, 3)
    np.testing.assert_allclose(cut.x_d, full.x_d[:3], atol=1e-6)
