"""Streaming: memory flat in video length, two passes equal to one, the resize rule, the landmark
workers, paste-back on the device against the host's, and the run's error policy."""

import json
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from liveportrait_jax import faces
from liveportrait_jax.io import InputError, VideoWriter, save_template
from liveportrait_jax.io.templates import MotionTemplate
from liveportrait_jax.pipeline import AnimateOptions, animate, animate_frames
from liveportrait_jax.pipeline.demo_media import astronaut, synth_driving_frames
from liveportrait_jax.pipeline.inputs import iter_driving_crops, resize_256
from liveportrait_jax.pipeline.read import media_from_frames, open_media


def _write_video(path, frames, fps=10):
    with VideoWriter(path, fps) as w:
        for f in frames:
            w.write(f)
    return str(path)


# --- the reference's resize of uncropped frames ----------------------------------------------------


def test_uncropped_frames_are_resized_linearly_as_the_reference():
    frame = cv2.resize(astronaut(), (480, 480))
    linear = cv2.resize(frame, (256, 256), interpolation=cv2.INTER_LINEAR)
    area = cv2.resize(frame, (256, 256), interpolation=cv2.INTER_AREA)
    assert np.abs(linear.astype(int) - area.astype(int)).max() > 5  # the two rules differ here
    assert np.array_equal(resize_256(frame), linear)
    media = media_from_frames(frame[None], name='square', is_video=False)
    (crop,) = list(iter_driving_crops(media, AnimateOptions(), None))
    assert np.array_equal(crop, linear)


# --- landmark workers -----------------------------------------------------------------------------


def test_landmarks_do_not_depend_on_the_number_of_workers():
    frames = synth_driving_frames(40, size=256)
    one = faces.landmarks.track_faces(frames, workers=1)
    two = faces.landmarks.track_faces(frames, workers=2)
    assert len(one) == len(two) == 40
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a.landmarks, b.landmarks)


# --- streaming equals the in-memory result ----------------------------------------------------------


def test_file_streaming_equals_in_memory_frames(models, tmp_path):
    """animate() on files (decoded twice, streamed) gives the frames animate_frames() gives on the
    decoded arrays (one pass over memory), for an image and a video source, and any chunk size."""
    drv_frames = synth_driving_frames(7, size=256)
    drv = _write_video(tmp_path / 'drv.mp4', drv_frames)
    decoded = np.stack(list(open_media(drv).frames()))
    src_frames = np.stack([np.roll(astronaut(), 3 * i, axis=1) for i in range(5)])
    src_video = _write_video(tmp_path / 'src.mp4', src_frames)
    src_decoded = np.stack(list(open_media(src_video).frames()))
    opts = AnimateOptions(flag_write_concat=False)
    for source, source_arrays in ((None, astronaut()[None]), (src_video, src_decoded)):
        mem = animate_frames(models, source_arrays, decoded, opts, chunk=3, label='')
        if source is None:
            source = str(tmp_path / 'src.png')
            cv2.imwrite(source, cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))
        r = animate(
            models, source, drv, tmp_path / 'out', opts, chunk=4, progress=False,
            keep_frames=True, label='',
        )  # fmt: skip
        assert r.n_frames == mem.n_frames == (7 if len(source_arrays) == 1 else 5)
        assert np.abs(r.crops.astype(int) - mem.crops.astype(int)).max() <= 1


# --- memory flat in video length --------------------------------------------------------------------

_RSS_SCRIPT = textwrap.dedent(
    """
    import json, os, resource, sys
    import numpy as np
    import liveportrait_jax as lp
    from liveportrait_jax.pipeline import AnimateOptions, animate
    from liveportrait_jax.pipeline.demo_media import astronaut
    src, drv, out = sys.argv[1:4]
    models = lp.init_random_models('tiny', seed=0)
    animate(models, src, drv, out, AnimateOptions(flag_write_concat=False), chunk=8,
            progress=False, label='')
    print(json.dumps({'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


def test_peak_memory_does_not_grow_with_video_length(tmp_path):
    """A driving video 6x longer (720 x 720 frames, 1.5 MB each: holding them would add ~450 MB)
    peaks within 100 MB of the short one's peak, each in its own process."""
    clip = synth_driving_frames(30, size=256)
    frames = [cv2.resize(f, (720, 720)) for f in clip]
    src = str(tmp_path / 'src.png')
    cv2.imwrite(src, cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))
    peaks = {}
    for n in (60, 360):
        drv = str(tmp_path / f'drv{n}.mp4')
        with VideoWriter(drv, 25) as w:
            for i in range(n):
                w.write(frames[i % len(frames)])
        res = subprocess.run(
            [sys.executable, '-c', _RSS_SCRIPT, src, drv, str(tmp_path / f'out{n}')],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert res.returncode == 0, res.stderr[-2000:]
        peaks[n] = json.loads(res.stdout.strip().splitlines()[-1])['rss_mb']
    assert peaks[360] < peaks[60] + 100, peaks


# --- paste-back on the device ---------------------------------------------------------------------


def test_device_paste_back_matches_the_host(models):
    """With the crop size equal to the networks' output (128 for the tiny config), the frames
    pasted back on the device equal faces.paste_back of the same crops within 1 level."""
    src = astronaut()
    drv = synth_driving_frames(3, size=256)
    opts = AnimateOptions(dsize=128, flag_write_concat=False)
    res = animate_frames(models, src[None], drv, opts, chunk=3, label='')
    from liveportrait_jax.pipeline.inputs import crop_source

    sf = crop_source(src, opts)
    mask = faces.make_paste_back_mask(128)
    for crop, frame in zip(res.crops, res.frames):
        host = faces.paste_back(crop, sf.M_c2o, sf.frame, mask)
        diff = np.abs(host.astype(int) - frame.astype(int))
        assert diff.max() <= 1
        assert (diff == 0).mean() > 0.999


# --- errors of a run --------------------------------------------------------------------------------


def test_square_driving_video_without_a_face_is_an_error(models, tmp_path):
    blank = np.full((6, 256, 256, 3), 128, np.uint8)
    drv = _write_video(tmp_path / 'blank.mp4', blank)
    src = str(tmp_path / 'src.png')
    cv2.imwrite(src, cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))
    with pytest.raises(faces.NoFaceError, match='blank.mp4'):
        animate(models, src, drv, tmp_path / 'out', progress=False)
    assert not os.path.exists(tmp_path / 'out' / 'src--blank.mp4')


def test_template_frame_limit(models, tmp_path):
    n = 12
    eye = np.eye(3, dtype=np.float32)
    t = MotionTemplate(
        R=np.repeat(eye[None], n, 0),
        exp=np.zeros((n, 21, 3), np.float32),
        t=np.zeros((n, 3), np.float32),
        scale=np.ones((n, 1), np.float32),
    )
    path = str(tmp_path / 'motion.pkl')
    save_template(path, t)
    src = str(tmp_path / 'src.png')
    cv2.imwrite(src, cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))
    with pytest.raises(InputError, match='12 frames'):
        animate(models, src, path, tmp_path / 'out', max_template_frames=10, progress=False)
    r = animate(models, src, path, tmp_path / 'out', max_template_frames=12, progress=False)
    assert r.n_frames == n
