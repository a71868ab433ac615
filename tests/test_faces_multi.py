"""Several faces of one source (--faces): the multi-face paste and the animation of a group photo
made from the astronaut (two copies side by side), on tiny random weights."""

import cv2
import jax.numpy as jnp
import numpy as np
import pytest

from liveportrait_jax import faces
from liveportrait_jax.ops import paste
from liveportrait_jax.pipeline import AnimateOptions, animate_frames
from liveportrait_jax.pipeline.demo_media import astronaut, synth_driving_frames

# The two faces' central regions and background bands far from both crops, in the group photo.
LEFT, RIGHT = (slice(80, 260), slice(80, 260)), (slice(80, 260), slice(440, 620))


@pytest.fixture(scope='module')
def group():
    face = cv2.resize(np.ascontiguousarray(astronaut()[0:300, 90:390]), (300, 300))
    img = np.full((560, 1100, 3), 200, np.uint8)  # wide grey margins: the background
    img[20:320, 20:320] = face
    img[20:320, 380:680] = face[:, ::-1]
    return img


@pytest.fixture(scope='module')
def driving():
    return synth_driving_frames(5, 256)


def _changed(a, b, region):
    return float((np.abs(a[region].astype(int) - b[region].astype(int)).sum(-1) > 0).mean())


def _crop_to_frame(cx, cy, side, size):
    k = side / size
    return np.array([[k, 0, cx - side / 2], [0, k, cy - side / 2], [0, 0, 1]], np.float64)


def _paste(crops, frame, Ms, present, size):
    origins, window = paste.paste_window(frame.shape[1:3], Ms, size)
    inv = paste.inverse_affine(Ms)
    b, f = present.shape
    return np.asarray(
        paste.paste_faces_batch(
            crops,
            frame,
            jnp.broadcast_to(inv, (b,) + inv.shape),
            jnp.broadcast_to(origins, (b, f, 2)),
            jnp.asarray(present, jnp.float32),
            jnp.asarray(faces.make_paste_back_mask(size)),
            jnp.asarray(paste.face_priority(size)),
            window=window,
        )
    )


def test_paste_faces_one_face_is_paste_back():
    rng = np.random.default_rng(0)
    size, frame = 64, rng.integers(0, 255, (1, 200, 300, 3), np.uint8)
    M = _crop_to_frame(120, 90, 100, size)[None]
    crops = rng.integers(0, 255, (3, 1, size, size, 3), np.uint8)
    got = _paste(crops, frame, M, np.ones((3, 1)), size)
    origins, window = paste.paste_window((200, 300), M, size)
    inv = paste.inverse_affine(M)
    want = np.asarray(
        paste.paste_back_batch(
            crops[:, 0], frame, jnp.broadcast_to(inv[0], (3,) + inv.shape[1:]),
            jnp.broadcast_to(origins[0], (3, 2)), jnp.asarray(faces.make_paste_back_mask(size)),
            window=window,
        )
    )  # fmt: skip
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999


def test_paste_faces_overlap_goes_to_the_nearer_face():
    size = 64
    frame = np.zeros((1, 120, 260, 3), np.uint8)
    Ms = np.stack([_crop_to_frame(90, 60, 110, size), _crop_to_frame(170, 60, 110, size)])
    crops = np.zeros((1, 2, size, size, 3), np.uint8)
    crops[:, 0], crops[:, 1] = 100, 250  # two flat faces: where each wins is plain to see
    out = _paste(crops, frame, Ms, np.ones((1, 2)), size)[0, 60, :, 0].astype(int)
    # Each face's centre is its own colour although the other crop covers it too; the hand-over
    # midway is smooth (no step larger than a few levels per pixel).
    assert out[90] == 100 and out[170] == 250
    assert out[125] < 110 and out[135] > 240
    assert np.abs(np.diff(out[95:165])).max() < 40
    # Outside both crops the frame is untouched; an absent face is not pasted.
    assert out[:30].max() == 0 and out[232:].max() == 0
    absent = _paste(crops, frame, Ms, np.array([[1.0, 0.0]]), size)[0, 60, :, 0]
    assert absent[170] == 0 and absent[90] == 100


def test_two_faces_animated_background_untouched(models, group, driving):
    opts = AnimateOptions(faces='all', flag_write_concat=False)
    res = animate_frames(models, group[None], driving, opts, chunk=4, label='')
    assert res.frames.shape == (5,) + group.shape
    for frame in res.frames[1:]:
        assert _changed(frame, group, LEFT) > 0.5 and _changed(frame, group, RIGHT) > 0.5
        # Far from both faces (bottom band, right margin) nothing changes.
        assert (frame[470:] == group[470:]).all() and (frame[:, 1000:] == group[:, 1000:]).all()
    one = animate_frames(models, group[None], driving, AnimateOptions(), chunk=4, label='')
    # The default is one face (the largest; here both are the same size): only one changes.
    changed = sorted(
        [_changed(one.frames[-1], group, LEFT), _changed(one.frames[-1], group, RIGHT)]
    )
    assert changed[0] == 0.0 and changed[1] > 0.5


def test_per_face_driving(models, group, driving):
    shared = animate_frames(
        models, group[None], [driving, driving], AnimateOptions(faces='0,1'), chunk=4, label=''
    )
    other = driving[::-1].copy()
    per_face = animate_frames(
        models, group[None], [driving, other], AnimateOptions(faces='0,1'), chunk=4, label=''
    )
    # Face 0 follows the same driving in both runs, face 1 another one (which copy is "largest"
    # is a tie here, so the test only asks that one face is unchanged and the other is not).
    a, b = shared.frames[1], per_face.frames[1]
    centre = [tuple(slice(s.start + 40, s.stop - 40) for s in r) for r in (LEFT, RIGHT)]
    same = [bool((a[c] == b[c]).all()) for c in centre]
    assert sorted(same) == [False, True]
    assert _changed(a, b, (LEFT, RIGHT)[same.index(False)]) > 0.5


def test_face_errors(models, group, driving):
    with pytest.raises(ValueError, match='3 driving inputs for 2 faces'):
        animate_frames(models, group[None], [driving] * 3, AnimateOptions(faces='0,1'), label='')
    with pytest.raises(faces.NoFaceError, match='2 face'):
        animate_frames(models, group[None], driving, AnimateOptions(faces='0,3'), label='')
    with pytest.raises(ValueError, match='several faces'):
        animate_frames(
            models, group[None], driving, AnimateOptions(faces='all', flag_do_crop=False), label=''
        )


def test_video_source_face_leaves_and_returns(models, group, driving):
    # A source video of the group in which the right face is covered for frames 2 and 3.
    frames = np.repeat(group[None], 5, axis=0)
    frames[2:4, :, 360:700] = 200
    res = animate_frames(
        models, frames, driving, AnimateOptions(faces='all', flag_write_concat=False), label=''
    )
    assert res.frames.shape == frames.shape
    for i, frame in enumerate(res.frames):
        assert _changed(frame, frames[i], LEFT) > 0.5 or i == 0
        if i in (2, 3):  # the face is gone: nothing is pasted where it was
            assert (frame[:, 700:] == frames[i][:, 700:]).all()
            assert _changed(frame, frames[i], RIGHT) == 0.0
        elif i > 0:
            assert _changed(frame, frames[i], RIGHT) > 0.5


def test_face_tracks_find_faces_that_come_in_later(group):
    # The right face is covered in frames 0 and 1 and comes in at frame 2; a face seen in one
    # frame only (a detector's stray find) does not count.
    frames = np.repeat(group[None], 5, axis=0)
    frames[:2, :, 360:700] = 200
    tracks = faces.landmarks.face_tracks(iter(frames), source_name='group.mp4')
    assert [t.first_frame for t in tracks] == [0, 2]
    assert [t.frames_seen for t in tracks] == [5, 3]
    assert tracks[0].face.bbox[0] < 360 <= tracks[1].face.bbox[0]
    # The faces `animate` chooses from (a progress bar counting the frames of that pass).
    from liveportrait_jax.pipeline.inputs import source_faces
    from liveportrait_jax.pipeline.read import media_from_frames

    counted = []
    media = media_from_frames(list(frames), name='group.mp4', is_video=True)
    count = lambda n: counted.append(n) or True  # noqa: E731  (tqdm's update returns a bool)
    chosen = source_faces(media, AnimateOptions(faces='1'), progress=count)
    assert [(f.index, f.track.first_frame) for f in chosen] == [(1, 2)] and sum(counted) == 5
    # Its landmarks in every frame, kept from that one search (each face's pass reads them).
    rows = list(chosen[0].rows.rows())
    assert [r is not None for r in rows] == [False, False, True, True, True]
    np.testing.assert_array_equal(rows[2].landmarks, chosen[0].track.face.landmarks)
    frames[:, :, 360:700] = 200
    frames[3] = group
    tracks = faces.landmarks.face_tracks(iter(frames), source_name='group.mp4', workers=2, block=2)
    assert [t.first_frame for t in tracks] == [0]


def test_video_source_face_comes_in_later(models, group, driving):
    # The right face comes in at frame 2: animated from then on, nothing pasted before.
    frames = np.repeat(group[None], 5, axis=0)
    frames[:2, :, 360:700] = 200
    opts = AnimateOptions(faces='all', flag_write_concat=False)
    res = animate_frames(models, frames, driving, opts, label='')
    for i, frame in enumerate(res.frames):
        assert _changed(frame, frames[i], LEFT) > 0.5 or i == 0
        if i < 2:
            assert (frame[:, 360:] == frames[i][:, 360:]).all()
        else:
            assert _changed(frame, frames[i], RIGHT) > 0.5
    # --faces 1 is that face alone: the first face is left as it is.
    res = animate_frames(models, frames, driving, opts.replace(faces='1'), label='')
    assert (res.frames[:, :, :330] == frames[:, :, :330]).all()
    assert _changed(res.frames[4], frames[4], RIGHT) > 0.5
