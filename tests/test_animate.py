"""The animation pipeline end to end on tiny random weights and media made from the astronaut."""

import os
import subprocess

import numpy as np
import pytest
from conftest import run_on_forced_host_devices

import liveportrait_jax as lp
import liveportrait_jax.pipeline
from liveportrait_jax.io import (
    InputError,
    VideoWriter,
    load_template,
    load_video_frames,
    probe_video,
    save_image,
)
from liveportrait_jax.pipeline import AnimateOptions, animate
from liveportrait_jax.pipeline.demo_media import astronaut, synth_driving_frames, write_demo_inputs

FPS = 10
N = 6


@pytest.fixture(scope='module')
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp('media')
    src, drv = write_demo_inputs(d, n_frames=N, fps=FPS)
    # A source video: the astronaut panning slowly, 4 frames.
    src_video = str(d / 'source_clip.mp4')
    img = astronaut()
    with VideoWriter(src_video, 8) as w:
        for i in range(4):
            w.write(np.roll(img, 4 * i, axis=1))
    # A non-square driving video with an audio track (sine), 8 frames at 10 fps.
    wide = str(d / 'wide_silent.mp4')
    with VideoWriter(wide, FPS) as w:
        for f in synth_driving_frames(8, size=256):
            w.write(np.pad(f, ((0, 0), (64, 64), (0, 0)), mode='edge'))
    wav = str(d / 'tone.wav')
    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run(
        [
            ffmpeg,
            '-y',
            '-loglevel',
            'error',
            '-f',
            'lavfi',
            '-i',
            'sine=frequency=440:duration=1',
            wav,
        ],
        check=True,
    )
    wide_audio = str(d / 'wide.mp4')
    subprocess.run(
        [
            ffmpeg,
            '-y',
            '-loglevel',
            'error',
            '-i',
            wide,
            '-i',
            wav,
            '-c:v',
            'copy',
            '-c:a',
            'aac',
            '-shortest',
            wide_audio,
        ],
        check=True,
    )
    drv_img = str(d / 'driving_face.png')
    save_image(drv_img, synth_driving_frames(3)[1])
    return dict(src=src, drv=drv, src_video=src_video, wide=wide_audio, drv_img=drv_img)


def run(models, media_src, media_drv, out, **kw):
    kw.setdefault('chunk', 4)
    return animate(models, media_src, media_drv, str(out), progress=False, **kw)


def test_image_source_video_driving(models, media, tmp_path):
    r = run(models, media['src'], media['drv'], tmp_path, keep_frames=True)
    assert r.n_frames == N and r.fps == FPS
    info = probe_video(r.output)
    assert (info.n_frames, info.fps, info.width, info.height) == (N, FPS, 512, 512)
    assert not info.has_audio
    concat = probe_video(r.concat)
    assert concat.n_frames == N and concat.width == 3 * concat.height
    assert r.crops.shape == (N, 128, 128, 3) and r.crops.dtype == np.uint8
    t = load_template(r.template)
    assert t.n_frames == N and t.kp.shape == (N, 21, 3) and t.c_eyes.shape == (N, 2)
    assert os.path.dirname(r.template) == str(tmp_path)
    # Deterministic: the same inputs give the same frames; and the template written by the run
    # drives the same animation as the video it came from.
    again = run(models, media['src'], media['drv'], tmp_path / 'again', keep_frames=True)
    np.testing.assert_array_equal(again.crops, r.crops)
    from_template = run(models, media['src'], r.template, tmp_path / 'tpl', keep_frames=True)
    assert from_template.n_frames == N and from_template.fps == FPS
    np.testing.assert_array_equal(from_template.crops, r.crops)
    # The demo weights are labelled in every output frame (white text on a black box).
    first = load_video_frames(r.output)[0]
    assert first[2:6, 2:40].mean() < 60 and first[:30, :200].max() > 200


def test_chunk_size_does_not_change_the_result(models, media, tmp_path):
    a = run(models, media['src'], media['drv'], tmp_path / 'a', chunk=1, keep_frames=True)
    b = run(models, media['src'], media['drv'], tmp_path / 'b', chunk=4, keep_frames=True)
    np.testing.assert_allclose(a.crops.astype(int), b.crops.astype(int), atol=1)


def test_image_driving_gives_an_image(models, media, tmp_path):
    r = run(models, media['src'], media['drv_img'], tmp_path)
    assert r.n_frames == 1 and r.output.endswith('.jpg') and r.concat.endswith('_concat.jpg')
    assert os.path.isfile(r.output) and os.path.isfile(r.concat)


def test_video_source(models, media, tmp_path):
    r = run(
        models,
        media['src_video'],
        media['drv'],
        tmp_path,
        options=AnimateOptions(flag_source_video_eye_retargeting=True),
    )
    assert r.n_frames == 4 and r.fps == 8  # min(source, driving) frames, the source's fps
    assert probe_video(r.output).n_frames == 4
    r = run(models, media['src_video'], media['drv_img'], tmp_path / 'img')
    assert r.n_frames == 4


def test_non_square_driving_is_cropped_and_keeps_audio(models, media, tmp_path):
    r = run(
        models, media['src'], media['wide'], tmp_path, options=AnimateOptions(flag_write_gif=True)
    )
    info = probe_video(r.output)
    assert info.n_frames == 8 and info.has_audio and probe_video(r.concat).has_audio
    assert os.path.getsize(r.gif) > 0


@pytest.mark.parametrize(
    'changes',
    [
        dict(animation_region='lip', flag_relative_motion=False),
        dict(flag_eye_retargeting=True, flag_lip_retargeting=True),
        dict(flag_do_crop=False),
        dict(flag_pasteback=False, flag_stitching=False, driving_option='pose-friendly'),
        dict(flag_stitching=False),  # the reference pastes back only with stitching
        dict(flag_crop_driving_video=True, dsize=256, scale=2.0, vy_ratio=0.0),
        dict(crop_box=(120.0, 20.0, 370.0, 270.0)),
    ],
)
def test_option_paths(models, media, tmp_path, changes):
    r = run(models, media['src'], media['drv'], tmp_path, options=AnimateOptions(**changes))
    info = probe_video(r.output)
    assert info.n_frames == N
    if False in (
        changes.get('flag_do_crop'),
        changes.get('flag_pasteback'),
        changes.get('flag_stitching'),
    ):
        assert (info.width, info.height) == (changes.get('dsize', 512),) * 2
    else:
        assert (info.width, info.height) == (512, 512)  # the astronaut's own size


def _no_outputs(d):
    return not os.path.exists(d) or not [f for f in os.listdir(d) if not f.endswith('.pkl')]


def test_bad_inputs(models, media, tmp_path):
    out = tmp_path / 'out'
    with pytest.raises(InputError, match='not found'):
        run(models, str(tmp_path / 'missing.jpg'), media['drv'], out)
    fake = tmp_path / 'fake.jpg'
    fake.write_text('not an image')
    with pytest.raises(InputError, match='fake.jpg'):
        run(models, str(fake), media['drv'], out)
    empty = tmp_path / 'empty.mp4'
    empty.write_bytes(b'')
    with pytest.raises(InputError, match='empty.mp4'):
        run(models, media['src'], str(empty), out)
    blank = tmp_path / 'blank.png'
    save_image(str(blank), np.full((256, 256, 3), 127, np.uint8))
    with pytest.raises(ValueError, match='no face found in .*blank.png'):
        run(models, str(blank), media['drv'], out)
    odd = tmp_path / 'odd.xyz'
    odd.write_text('?')
    with pytest.raises(InputError, match='unsupported file type'):
        run(models, media['src'], str(odd), out)
    assert _no_outputs(out)


def test_bad_templates(models, media, tmp_path):
    import pickle

    bad = tmp_path / 'bad_shapes.pkl'
    with open(bad, 'wb') as f:
        pickle.dump(
            {
                'n_frames': 2,
                'output_fps': 25,
                'motion': [
                    {
                        'R': np.eye(3, dtype=np.float32)[None],
                        'exp': np.zeros((1, 20, 3), np.float32),
                        't': np.zeros((1, 3), np.float32),
                        'scale': np.ones((1, 1), np.float32),
                    }
                ]
                * 2,
            },
            f,
        )
    with pytest.raises(InputError, match='bad_shapes.pkl'):
        run(models, media['src'], str(bad), tmp_path / 'out')

    class Evil:
        def __reduce__(self):
            return (os.system, (f'touch {tmp_path / "pwned"}',))

    evil = tmp_path / 'evil.pkl'
    evil.write_bytes(pickle.dumps({'motion': Evil()}))
    with pytest.raises(InputError, match='evil.pkl'):
        run(models, media['src'], str(evil), tmp_path / 'out')
    assert not (tmp_path / 'pwned').exists()
    assert _no_outputs(tmp_path / 'out')


def test_sharded_chunks_match_one_device(tmp_path):
    """Chunks split over 4 (forced host) devices give the single-device frames."""
    script = r"""
import numpy as np, jax, liveportrait_jax as lp
from liveportrait_jax.pipeline.chunks import Chunker
from liveportrait_jax.pipeline import kernels
assert jax.local_device_count() == 4, jax.local_device_count()
m = lp.init_random_models('tiny', seed=0)
rng = np.random.default_rng(0)
crops = rng.integers(0, 255, (6, 256, 256, 3), np.uint8)
info = kernels.motion(m, crops[:1])
f_s = kernels.feature(m, crops[:1])
x_d = np.asarray(info['x_s']) + rng.normal(size=(6, 21, 3)).astype(np.float32) * 0.02
fn = lambda xd: kernels.render_image_source(m, f_s, info['x_s'], xd)
four = Chunker(4)
assert four.chunk == 4 and four.mesh is not None
a = four.map(fn, [x_d], 6)
b = Chunker(4, devices=jax.local_devices()[:1]).map(fn, [x_d], 6)
assert a.shape == (6, 128, 128, 3)
assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
print('ok')
"""
    run_on_forced_host_devices(script, 4, timeout=600)


def test_cli_demo_and_errors(tmp_path, capsys):
    from liveportrait_jax.cli import main

    assert main(['animate', '--demo', '-o', str(tmp_path), '--quiet', '--chunk', '4']) == 0
    outs = sorted(os.listdir(tmp_path))
    assert 'demo_source--demo_driving.mp4' in outs and 'demo_driving.pkl' in outs
    capsys.readouterr()
    inputs = tmp_path / 'demo_inputs'
    src, drv = str(inputs / 'demo_source.png'), str(inputs / 'demo_driving.mp4')
    nowhere = str(tmp_path / 'noweights')
    assert main(['animate', '-s', src, '-d', drv, '--weights', nowhere]) == 2
    err = capsys.readouterr().err
    assert 'liveportrait-jax convert' in err and 'Hugging Face' in err and '--demo' in err
    # the inputs are checked first: a missing source is named, not the missing weights
    missing = str(tmp_path / 'nope.jpg')
    assert main(['animate', '-s', missing, '-d', drv, '--weights', nowhere]) == 2
    assert capsys.readouterr().err.endswith(f'error: {missing!r}: file not found\n')


def test_animate_frames_in_memory(models):
    src = astronaut()[None]
    drv = synth_driving_frames(3)
    r = lp.pipeline.animate_frames(models, src, drv, chunk=2)
    assert r.n_frames == 3 and r.crops.shape == (3, 128, 128, 3)
    assert r.frames.shape == (3, 512, 512, 3) and r.frames.dtype == np.uint8
    no_paste = lp.pipeline.animate_frames(
        models, src, drv, AnimateOptions(flag_pasteback=False), chunk=2
    )
    assert no_paste.frames.shape == (3, 512, 512, 3)
    np.testing.assert_array_equal(no_paste.crops, r.crops)
    with pytest.raises(InputError, match='uint8'):
        lp.pipeline.animate_frames(models, src.astype(np.float32), drv)
