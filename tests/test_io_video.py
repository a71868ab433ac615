"""Video probe/read/write, audio muxing, and clear errors for bad videos."""

import os
import subprocess
import warnings

import numpy as np
import pytest

from liveportrait_jax.io import (
    DamagedVideoWarning,
    InputError,
    OutputError,
    VideoWriter,
    add_audio_from,
    concat_side_by_side,
    has_audio,
    iter_video_frames,
    load_video_frames,
    probe_video,
    write_gif,
    write_video,
)
from liveportrait_jax.io.ffmpeg import ffmpeg_exe

H, W, N, FPS = 21, 33, 12, 25  # odd size on purpose


def _frames(n=N, h=H, w=W):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for i in range(n):
        r = (x / w * 200 + i * 4) % 256
        g = y / h * 200 + 20
        b = np.full_like(x, 40 + i * 10)
        out.append(np.stack([r, g, b], -1).astype(np.uint8))
    return out


def _ffmpeg(*args):
    subprocess.run(
        [ffmpeg_exe(), '-hide_banner', '-nostdin', '-loglevel', 'error', '-y', *args],
        check=True,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope='module')
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp('media')
    silent = d / 'silent.mp4'
    write_video(silent, _frames(), FPS)
    tone = d / 'tone.m4a'  # 2 s of 440 Hz AAC, longer than the video on purpose
    _ffmpeg('-f', 'lavfi', '-i', 'sine=frequency=440:duration=2', '-c:a', 'aac', str(tone))
    wav = d / 'tone.wav'  # PCM cannot always be stream-copied into mp4: exercises the AAC fallback
    _ffmpeg('-f', 'lavfi', '-i', 'sine=frequency=440:duration=2', str(wav))
    return dict(dir=d, silent=silent, tone=tone, wav=wav)


def test_written_video_reads_back(media):
    info = probe_video(media['silent'])
    # yuv420p needs even sizes: padded by one replicated row and column.
    assert (info.width, info.height) == (W + 1, H + 1)
    assert info.n_frames == N
    assert info.fps == pytest.approx(FPS)
    assert info.has_audio is False
    assert info.video_codec == 'h264'

    frames = load_video_frames(media['silent'])
    assert len(frames) == N
    ref = _frames()
    for got, want in zip(frames, ref):
        assert got.shape == (H + 1, W + 1, 3) and got.dtype == np.uint8
        assert np.abs(got[:H, :W].astype(int) - want).mean() < 6  # lossy but close
    # The frames are writable copies, not views on ffmpeg's buffer.
    frames[0][0, 0] = 0


def test_max_frames_and_early_stop(media, monkeypatch):
    from liveportrait_jax.io import video as video_io

    assert len(load_video_frames(media['silent'], max_frames=5)) == 5
    assert load_video_frames(media['silent'], max_frames=0) == []
    started = []
    track = video_io.track_process
    monkeypatch.setattr(video_io, 'track_process', lambda p: started.append(p) or track(p))
    it = iter_video_frames(media['silent'])
    next(it)
    it.close()  # abandoning the iterator must stop ffmpeg cleanly: killed or exited, and reaped
    (proc,) = started
    assert proc.returncode is not None and proc.stdout.closed
    assert not os.path.exists(f'/proc/{proc.pid}')  # no zombie left behind


def test_fractional_fps(tmp_path):
    path = tmp_path / 'ntsc.mp4'
    write_video(path, _frames(4, 16, 16), 30000 / 1001)
    assert probe_video(path).fps == pytest.approx(29.97, abs=0.01)


def test_audio_muxing(media, tmp_path):
    assert has_audio(media['tone']) and not has_audio(media['silent'])

    out = tmp_path / 'with_audio.mp4'
    with VideoWriter(out, FPS, audio_from=media['tone']) as w:
        w.write_many(_frames())
    info = probe_video(out)
    assert info.has_audio and info.audio_codec == 'aac'  # stream-copied
    assert info.n_frames == N
    assert info.duration_s < 1.0  # audio cut to the video's length (0.48 s)

    # A video's audio track can be the source too (the driving-video case).
    out2 = tmp_path / 'from_video.mp4'
    write_video(out2, _frames(), FPS, audio_from=out)
    assert probe_video(out2).has_audio

    # Source without audio: the result has none either.
    out3 = tmp_path / 'still_silent.mp4'
    write_video(out3, _frames(), FPS, audio_from=media['silent'])
    assert not probe_video(out3).has_audio

    # PCM wav source.
    out4 = tmp_path / 'from_wav.mp4'
    write_video(out4, _frames(), FPS, audio_from=media['wav'])
    assert probe_video(out4).has_audio
    assert sorted(os.listdir(tmp_path)) == [
        'from_video.mp4',
        'from_wav.mp4',
        'still_silent.mp4',
        'with_audio.mp4',
    ]


def test_add_audio_from_after_writing(media, tmp_path):
    out = tmp_path / 'muxed.mp4'
    assert add_audio_from(media['silent'], media['tone'], out) is True
    assert probe_video(out).has_audio and not probe_video(media['silent']).has_audio
    copy = tmp_path / 'copy.mp4'
    assert add_audio_from(media['silent'], media['silent'], copy) is False
    assert not probe_video(copy).has_audio and probe_video(copy).n_frames == N


def test_writer_failure_leaves_nothing(tmp_path):
    path = tmp_path / 'bad.mp4'
    with pytest.raises(RuntimeError, match='boom'):
        with VideoWriter(path, FPS) as w:
            w.write(_frames(1)[0])
            raise RuntimeError('boom')
    with pytest.raises(OutputError, match='no frames'):
        with VideoWriter(path, FPS):
            pass
    with pytest.raises(OutputError, match='all frames must match'):
        with VideoWriter(path, FPS) as w:
            w.write(_frames(1)[0])
            w.write(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(OutputError, match='uint8'):
        with VideoWriter(path, FPS) as w:
            w.write(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(OutputError, match='fps'):
        VideoWriter(path, 0)
    with pytest.raises(InputError, match='audio source file not found'):
        VideoWriter(path, FPS, audio_from=tmp_path / 'missing.wav')
    w = VideoWriter(path, FPS)
    w.write(_frames(1)[0])
    w.abort()
    with pytest.raises(OutputError, match='aborted'):
        w.write(_frames(1)[0])
    with pytest.raises(OutputError, match='aborted'):
        w.close()
    assert os.listdir(tmp_path) == []
    (tmp_path / 'noise.wav').write_bytes(b'RIFF garbage' * 10)
    with pytest.raises(InputError, match='noise.wav.*not a readable'):
        VideoWriter(path, FPS, audio_from=tmp_path / 'noise.wav')
    assert os.listdir(tmp_path) == ['noise.wav']


def test_garbage_video(tmp_path):
    path = tmp_path / 'garbage.mp4'
    path.write_bytes(b'definitely not a video ' * 50)
    with pytest.raises(InputError, match='garbage.mp4.*not a readable'):
        probe_video(path)
    with pytest.raises(InputError, match='garbage.mp4'):
        list(iter_video_frames(path))


def test_missing_and_empty_video(tmp_path):
    with pytest.raises(InputError, match='missing.mp4.*not found'):
        probe_video(tmp_path / 'missing.mp4')
    (tmp_path / 'empty.mp4').write_bytes(b'')
    with pytest.raises(InputError, match='empty'):
        list(iter_video_frames(tmp_path / 'empty.mp4'))


def test_zero_frame_video(tmp_path):
    path = tmp_path / 'zero.y4m'  # a valid header declaring a stream, and no frames
    path.write_bytes(b'YUV4MPEG2 W64 H48 F25:1 Ip A1:1 C420jpeg\n')
    with pytest.raises(InputError, match='zero.y4m.*no frames'):
        probe_video(path)
    with pytest.raises(InputError, match='no frames'):
        list(iter_video_frames(path))


def test_audio_only_file_is_not_a_video(media):
    with pytest.raises(InputError, match='no video stream'):
        probe_video(media['tone'])


def test_write_gif(tmp_path):
    path = tmp_path / 'anim.gif'
    write_gif(path, _frames(5), fps=10)
    frames = load_video_frames(path)
    assert len(frames) == 5 and frames[0].shape == (H, W, 3)
    with pytest.raises(OutputError, match='no frames'):
        write_gif(tmp_path / 'none.gif', [], fps=10)
    assert sorted(os.listdir(tmp_path)) == ['anim.gif']


def test_concat_side_by_side():
    driving = np.zeros((100, 50, 3), np.uint8)
    source = np.zeros((40, 40), np.uint8)
    result = np.full((64, 64, 3), 9, np.uint8)
    out = concat_side_by_side([driving, source, result])
    assert out.shape == (64, 32 + 64 + 64, 3)  # common height = the result's, aspect kept
    np.testing.assert_array_equal(out[:, -64:], result)
    assert concat_side_by_side([None, source, result]).shape == (64, 128, 3)
    assert concat_side_by_side([result], height=32).shape == (32, 32, 3)


def test_rotated_phone_video_is_upright(tmp_path):
    # Phones store portrait video as landscape plus a display rotation; ffmpeg applies it on decode,
    # and the probe must report the size of the frames actually produced.
    src, rotated = tmp_path / 'land.mp4', tmp_path / 'rot.mp4'
    write_video(src, _frames(3, 20, 36), FPS)
    _ffmpeg('-display_rotation:v:0', '90', '-i', str(src), '-c', 'copy', str(rotated))
    info = probe_video(rotated)
    assert (info.width, info.height) == (20, 36)
    frames = load_video_frames(rotated)
    assert len(frames) == 3 and frames[0].shape == (36, 20, 3)


def test_unclosed_writer_publishes_nothing(tmp_path):
    w = VideoWriter(tmp_path / 'forgot.mp4', FPS)
    w.write(_frames(1)[0])
    with pytest.warns(ResourceWarning, match='never closed'):
        w.__del__()
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope='module')
def hundred_frames(tmp_path_factory):
    """A 100-frame 64x64 mp4 (index at the start: VideoWriter uses +faststart) of noise, so that
    every frame takes a similar share of the file."""
    path = tmp_path_factory.mktemp('long') / 'hundred.mp4'
    rng = np.random.default_rng(0)
    with VideoWriter(path, FPS) as w:
        for _ in range(100):
            w.write(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    return path


def test_truncated_video_warns_with_both_counts(hundred_frames, tmp_path):
    data = hundred_frames.read_bytes()
    cut = tmp_path / 'cut.mp4'
    cut.write_bytes(data[: len(data) // 2])
    info = probe_video(cut)
    # The packet count stops where the file does; the index still says 100.
    assert info.truncated and info.indexed_frames == 100 and info.n_frames < 100
    with pytest.warns(DamagedVideoWarning, match=r'decoded only \d+ of 100 frames') as rec:
        frames = load_video_frames(cut)
    assert 0 < len(frames) < 100
    (msg,) = [str(w.message) for w in rec if issubclass(w.category, DamagedVideoWarning)]
    assert msg.startswith(f'{str(cut)!r}: decoded only {len(frames)} of 100 frames; ')
    assert 'the file is damaged or truncated' in msg
    # Stopping early on request is not damage.
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert len(load_video_frames(cut, max_frames=5)) == 5


def test_intact_video_gives_no_damage_warning(hundred_frames):
    info = probe_video(hundred_frames)
    assert (info.n_frames, info.indexed_frames, info.truncated) == (100, 100, False)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert len(load_video_frames(hundred_frames)) == 100


def test_abort_stops_the_encoder_and_removes_the_temp_file(tmp_path):
    w = VideoWriter(tmp_path / 'out.mp4', FPS)
    w.write(_frames(1)[0])
    proc, tmp = w._proc, w._target.tmp_path
    assert proc.poll() is None and os.path.exists(tmp)
    w.abort()
    assert proc.returncode is not None  # killed and reaped
    assert os.listdir(tmp_path) == []
    w.abort()  # twice is fine


def test_garbage_collected_writer_leaves_no_temp_file(tmp_path):
    import gc

    w = VideoWriter(tmp_path / 'dropped.mp4', FPS)
    w.write(_frames(1)[0])
    proc = w._proc
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ResourceWarning)
        del w
        gc.collect()
    assert proc.returncode is not None
    assert os.listdir(tmp_path) == []
