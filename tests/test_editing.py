"""Portrait editing (image retargeting) and video lip retargeting, on tiny random weights.

The expected keypoint entries and coefficients below were read off the reference's
`update_delta_new_*` functions (src/gradio_pipeline.py) and are written out here independently of
the table in liveportrait_jax/pipeline/editing.py.
"""

import numpy as np
import pytest

import liveportrait_jax as lp
from liveportrait_jax import faces
from liveportrait_jax.io import VideoWriter, probe_video
from liveportrait_jax.pipeline import editing as ed
from liveportrait_jax.pipeline.demo_media import astronaut, synth_driving_frames

# slider -> (value, {(keypoint, axis): expected change of exp[keypoint, axis]})
REFERENCE_EDITS = {
    'smile': (
        1.0,
        {
            (20, 1): -0.01,
            (14, 1): -0.02,
            (17, 1): 0.0065,
            (17, 2): 0.003,
            (13, 1): -0.00275,
            (16, 1): -0.00275,
            (3, 1): -0.0035,
            (7, 1): -0.0035,
        },
    ),
    'wink': (
        10.0,
        {(11, 1): 0.01, (13, 1): -0.003, (17, 0): 0.003, (17, 1): 0.003, (3, 1): -0.003},
    ),
    'eyebrow': (10.0, {(1, 1): 0.01, (2, 1): -0.01}),
    'eyebrow-': (-10.0, {(1, 0): 0.01, (2, 0): -0.01, (1, 1): -0.003, (2, 1): 0.003}),
    'eyeball_direction_x': (10.0, {(11, 0): 0.007, (15, 0): 0.01}),
    'eyeball_direction_x-': (-10.0, {(11, 0): -0.01, (15, 0): -0.007}),
    # gaze -0.001 * v, plus the lids: blink = -v / 2 times (-0.001, 0.0003, -0.001, 0.0003)
    'eyeball_direction_y': (
        10.0,
        {(11, 1): -0.01 + 0.005, (15, 1): -0.01 + 0.005, (13, 1): -0.0015, (16, 1): -0.0015},
    ),
    'lip_variation_zero': (0.05, {(19, 0): 0.05}),
    'lip_variation_one': (10.0, {(14, 1): 0.01, (3, 1): -0.005, (7, 1): -0.005, (17, 2): -0.005}),
    'lip_variation_two': (10.0, {(20, 2): -0.01, (20, 1): -0.01, (14, 1): -0.01}),
    'lip_variation_three': (100.0, {(19, 1): 0.1, (19, 2): 0.01, (17, 1): -0.01}),
    'mov_x': (0.1, {(5, 0): -0.1}),
    'mov_y': (0.1, {(5, 1): 0.1}),
}


def _info(seed=0, b=1):
    rng = np.random.default_rng(seed)
    return {
        'pitch': rng.uniform(-10, 10, (b, 1)).astype(np.float32),
        'yaw': rng.uniform(-10, 10, (b, 1)).astype(np.float32),
        'roll': rng.uniform(-10, 10, (b, 1)).astype(np.float32),
        'kp': rng.normal(size=(b, 21, 3)).astype(np.float32) * 0.3,
        'exp': rng.normal(size=(b, 21, 3)).astype(np.float32) * 0.02,
        't': rng.normal(size=(b, 3)).astype(np.float32) * 0.05,
        'scale': rng.uniform(1.2, 1.8, (b, 1)).astype(np.float32),
    }


def test_neutral_sliders_give_the_source_keypoints():
    info = _info()
    x_s = np.asarray(lp.transform_keypoints(info))
    np.testing.assert_array_equal(ed.edit_keypoints(info, ed.EditSliders()), x_s)
    zeros = ed.EditSliders(**{s.name: s.neutral for s in ed.SLIDERS})
    np.testing.assert_array_equal(ed.edit_keypoints(info, zeros), x_s)
    # keep_tz: the reference's literal sum (+ t_z on every keypoint)
    got = ed.edit_keypoints(info, ed.EditSliders(), keep_tz=True)
    np.testing.assert_allclose(
        got[..., 2] - x_s[..., 2], np.broadcast_to(info['t'][:, 2:], (1, 21)), atol=1e-7
    )


@pytest.mark.parametrize('case', sorted(REFERENCE_EDITS))
def test_expression_slider_moves_the_reference_entries(case):
    value, expected = REFERENCE_EDITS[case]
    name = case.rstrip('-')
    info = _info(1)
    neutral = ed.edit_keypoints(info, ed.EditSliders())
    edited = ed.edit_keypoints(info, ed.EditSliders(**{name: value}))
    diff = edited - neutral
    changed = {(int(k), int(a)) for k, a in zip(*np.nonzero(np.abs(diff[0]) > 1e-7))}
    assert changed == set(expected), (case, sorted(changed))
    # x_d = scale * (kp @ R + exp + delta) + t: the edit is added after the rotation, so the
    # keypoints move by scale * delta exactly.
    s = float(info['scale'][0, 0])
    for (k, a), d in expected.items():
        np.testing.assert_allclose(diff[0, k, a], s * d, rtol=1e-4, atol=1e-7)


def test_pose_and_zoom_sliders():
    info = _info(2)
    x_s = np.asarray(lp.transform_keypoints(info))
    for name, value in (('head_pitch', 7.0), ('head_yaw', -12.0), ('head_roll', 5.0)):
        got = ed.edit_keypoints(info, ed.EditSliders(**{name: value}))
        moved = dict(info)
        moved[name.split('_')[1]] = info[name.split('_')[1]] + np.float32(value)
        want = np.asarray(lp.transform_keypoints(moved))  # R_d R_s^T R_s = R_d
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert np.all(np.abs(got - x_s).max(axis=-1) > 1e-5), name  # every keypoint moves
    got = ed.edit_keypoints(info, ed.EditSliders(mov_z=1.1))
    t = np.concatenate([info['t'][:, :2], [[0.0]]], axis=1)[:, None]
    np.testing.assert_allclose(got - t, 1.1 * (x_s - t), rtol=1e-5, atol=1e-6)


def test_slider_validation():
    with pytest.raises(ValueError, match='smile'):
        ed.EditSliders(smile=float('nan'))
    with pytest.raises(ValueError, match='wink'):
        ed.EditSliders(wink='a lot')
    assert ed.EditSliders(smile='0.5').smile == 0.5  # numbers from a form are accepted


# --- on the tiny random models --------------------------------------------------------------------


@pytest.fixture(scope='module')
def prepared(models):
    return ed.prepare_portrait(models, astronaut(), name='astronaut.png')


def test_prepare_portrait(prepared):
    img = astronaut()
    assert prepared.image.shape == img.shape
    assert prepared.crop_256.shape == (256, 256, 3) and prepared.crop_256.dtype == np.uint8
    assert prepared.M_c2o.shape == (3, 3)
    assert prepared.landmarks.shape == (478, 2)
    assert prepared.x_s.shape == (1, 21, 3)
    assert prepared.eye_ratio.shape == (1, 2) and prepared.lip_ratio.shape == (1, 1)
    assert 0.0 < prepared.source_eye_open < 0.8
    assert prepared.source_eye_open == round(float(prepared.eye_ratio.mean()), 2)


def test_neutral_edit_is_the_unedited_reconstruction(models, prepared):
    res = ed.render_edit(models, prepared, label='')
    np.testing.assert_array_equal(res.x_d_edit, prepared.x_s)
    x_d = np.asarray(models.stitching(prepared.x_s, prepared.x_s))
    np.testing.assert_allclose(res.x_d, x_d, atol=1e-6)
    out = np.asarray(models.warp_decode(prepared.f_s, prepared.x_s, x_d)['out'][0])
    want = (np.clip(out, 0, 1) * 255).astype(np.uint8)
    if want.shape[0] != 512:
        import cv2

        want = cv2.resize(want, (512, 512))
    assert np.abs(res.crop.astype(int) - want.astype(int)).max() <= 1
    assert res.crop.shape == (512, 512, 3) and res.crop.dtype == np.uint8
    assert res.pasted.shape == prepared.image.shape and res.pasted.dtype == np.uint8
    # the ratio sliders at the source's own values change nothing either
    same = ed.render_edit(
        models,
        prepared,
        ed.EditSliders(eye_ratio=prepared.source_eye_open, lip_ratio=prepared.source_lip_open),
        label='',
    )
    np.testing.assert_array_equal(same.x_d, res.x_d)


def test_edit_portrait_defaults_equal_explicit_zeros(models):
    img = astronaut()
    crop0, pasted0 = ed.edit_portrait(models, img)
    crop1, pasted1 = ed.edit_portrait(models, img, **{s.name: s.neutral for s in ed.SLIDERS})
    np.testing.assert_array_equal(crop0, crop1)
    np.testing.assert_array_equal(pasted0, pasted1)
    assert crop0.shape == (512, 512, 3) and pasted0.shape == img.shape
    crop2, _ = ed.edit_portrait(models, img, smile=1.0)
    assert crop2.shape == crop0.shape
    with pytest.raises(TypeError, match='smiel'):
        ed.edit_portrait(models, img, smiel=1.0)


def test_eye_and_lip_targets_use_the_retargeting_networks(models, prepared):
    x_s = prepared.x_s
    res = ed.render_edit(
        models, prepared, ed.EditSliders(eye_ratio=0.05), stitching=False, label=''
    )
    ratio = np.array([[prepared.eye_ratio[0, 0], prepared.eye_ratio[0, 1], 0.05]], np.float32)
    np.testing.assert_allclose(
        res.x_d - x_s, np.asarray(models.retarget_eye(x_s, ratio)), atol=1e-6
    )
    res = ed.render_edit(models, prepared, ed.EditSliders(lip_ratio=0.6), stitching=False, label='')
    ratio = np.array([[prepared.lip_ratio[0, 0], 0.6]], np.float32)
    np.testing.assert_allclose(
        res.x_d - x_s, np.asarray(models.retarget_lip(x_s, ratio)), atol=1e-6
    )
    # with stitching: S applied to the retargeted keypoints
    both = ed.EditSliders(eye_ratio=0.05, lip_ratio=0.6, smile=0.5)
    plain = ed.render_edit(models, prepared, both, stitching=False, label='')
    stitched = ed.render_edit(models, prepared, both, label='')
    np.testing.assert_allclose(
        stitched.x_d, np.asarray(models.stitching(x_s, plain.x_d)), atol=1e-6
    )


def test_edit_without_crop(models):
    img = astronaut()
    crop, pasted = ed.edit_portrait(models, img, do_crop=False, head_yaw=10)
    assert crop.shape == pasted.shape == (512, 512, 3)


def test_no_face_names_the_file(models):
    with pytest.raises(faces.NoFaceError, match='blank.png'):
        ed.prepare_portrait(models, np.full((200, 200, 3), 128, np.uint8), name='blank.png')


# --- video lip retargeting ------------------------------------------------------------------------


@pytest.fixture(scope='module')
def clip():
    return synth_driving_frames(4)


def test_video_lip_retargeting(models, clip):
    res = ed.retarget_video_frames(models, clip, lip_ratio=0.5, chunk=4)
    assert res.n_frames == 4
    assert res.crops.shape == (4, 512, 512, 3) and res.crops.dtype == np.uint8
    assert res.frames.shape == clip.shape
    assert res.concat.shape == (4, 512, 1024, 3)
    assert res.x_d.shape == (4, 21, 3)


def test_video_lip_keypoints(models, clip):
    crops = np.stack([ed.prepare_portrait(models, f, scale=2.3).crop_256 for f in clip])
    info = {k: np.asarray(v) for k, v in models.get_kp_info(crops / 255.0).items()}
    motion = dict(
        info, R=np.asarray(lp.get_rotation_matrix(info['pitch'], info['yaw'], info['roll']))
    )
    x_s = np.asarray(lp.transform_keypoints(info))
    src_lip = np.array([[0.1], [0.2], [0.05], [0.3]], np.float32)
    # huge observation variance = strong smoothing; tiny = none
    raw = ed.video_lip_keypoints(
        models, motion, x_s, lip_ratio=0.4, src_lip=src_lip, smooth_observation_variance=1e-12
    )
    ratio = np.concatenate([src_lip, np.full((4, 1), 0.4, np.float32)], axis=1)
    per_frame = np.asarray(models.retarget_lip(x_s, ratio))
    np.testing.assert_allclose(raw - x_s, per_frame, atol=1e-5)
    assert np.abs(per_frame - per_frame[:1]).max() > 1e-3  # the frames' offsets differ
    # huge variance: the filter never leaves its first observation, every frame gets frame 0's
    strong = ed.video_lip_keypoints(
        models, motion, x_s, lip_ratio=0.4, src_lip=src_lip, smooth_observation_variance=1e6
    )
    np.testing.assert_allclose(strong - x_s, np.repeat(per_frame[:1], 4, 0), atol=1e-5)
    # silence with a lip array: every non-eye expression is the lip array, the eyes are kept
    lip_array = np.zeros((21, 3), np.float32)
    x_d = ed.video_lip_keypoints(models, motion, x_s, silence=True, lip_array=lip_array)
    eyes = [11, 13, 15, 16, 18]
    np.testing.assert_allclose(x_d[:, eyes], x_s[:, eyes], atol=1e-5)
    others = [k for k in range(21) if k not in eyes]
    exp0 = dict(info, exp=np.zeros_like(info['exp']))
    np.testing.assert_allclose(
        x_d[:, others], np.asarray(lp.transform_keypoints(exp0))[:, others], atol=1e-5
    )
    with pytest.raises(ValueError, match='target'):
        ed.video_lip_keypoints(models, motion, x_s, src_lip=src_lip)


def test_retarget_video_writes_videos(models, clip, tmp_path):
    path = str(tmp_path / 'talk.mp4')
    with VideoWriter(path, 8) as w:
        for f in clip:
            w.write(f)
    out = ed.retarget_video(models, path, str(tmp_path / 'out'), lip_ratio=0.3, chunk=4)
    assert out.output.endswith('talk_retargeting.mp4')
    assert out.concat.endswith('talk_retargeting_concat.mp4')
    for p in (out.output, out.concat):
        info = probe_video(p)
        assert info.n_frames == 4 and abs(info.fps - 8) < 1e-3
    silent = ed.retarget_video(models, path, str(tmp_path / 'silent'), silence=True, chunk=4)
    assert probe_video(silent.output).n_frames == 4
