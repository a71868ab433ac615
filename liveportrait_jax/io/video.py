"""Video in and out: probe, iterate RGB frames, write h264 mp4 (optionally with audio), write GIFs.

Reading pipes ffmpeg's decoded RGB frames with the same options as imageio's ffmpeg reader (which the
reference uses), so frame counts and pixel values match it, including ffmpeg's automatic rotation of
phone videos. ffmpeg is the binary from the imageio-ffmpeg wheel (see ffmpeg.py).

Writing pipes raw RGB into ffmpeg: libx264, yuv420p, CRF 18 by default (the reference's setting).
yuv420p needs even width and height; odd sizes are PADDED by replicating the last row/column at the
bottom/right (nothing is resampled, so pixels stay where they are; the output is at most one pixel
larger). Every output is written to a temporary sibling file and renamed into place only when
complete.

A video that decodes to fewer frames than it should (a truncated download or copy) is not silently
short: iter_video_frames warns with DamagedVideoWarning, naming the file and both counts.
"""

from __future__ import annotations

import dataclasses
import fractions
import functools
import math
import os
import struct
import subprocess
import tempfile
import warnings
from typing import Iterable, Iterator

import numpy as np

from .. import stopping
from .atomic import AtomicPath, atomic_write_path, stop_process, track_process
from .compose import concat_side_by_side  # noqa: F401  (re-exported: part of the video API)
from .errors import InputError, OutputError, describe
from .ffmpeg import (
    check_input_file,
    ffmpeg_exe,
    inspect_media,
    raise_output_failure,
    run_ffmpeg,
    stderr_tail,
)
from .images import as_rgb_uint8

__all__ = [
    'DamagedVideoWarning',
    'VideoInfo',
    'probe_video',
    'iter_video_frames',
    'load_video_frames',
    'VideoWriter',
    'write_video',
    'add_audio_from',
    'has_audio',
    'write_gif',
    'concat_side_by_side',
]


class DamagedVideoWarning(UserWarning):
    """A video decoded to fewer frames than its container says it holds (damaged or truncated).

    The frames that could be decoded are still produced; this says that the result is short.
    """


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    path: str
    fps: float
    n_frames: (
        int  # frames in the container (packet count); what iter_video_frames yields for CFR video
    )
    width: int
    height: int
    has_audio: bool
    duration_s: float | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    # Frames the container's index declares (the sample table of an mp4/mov), when it has one; more
    # than n_frames when the file is truncated after an index written at its start (faststart).
    indexed_frames: int | None = None
    truncated: bool = False  # the file ends before the data its index/boxes point to

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), OpenCV order."""
        return self.width, self.height


def probe_video(path: os.PathLike | str) -> VideoInfo:
    """Read fps, frame count, frame size and audio presence; InputError if it is not a usable video.

    fps falls back to frames/duration, then to 25 (the reference's default) when the header has none.
    """
    name = describe(path)
    check_input_file(path, 'video')
    info, n_frames = inspect_media(path, count_video_frames=True)
    if not info.has_video:
        raise InputError(
            f'{name}: contains no video stream' + (' (audio only)' if info.has_audio else '')
        )
    if not n_frames:
        raise InputError(f'{name}: video stream contains no frames')
    if info.width <= 0 or info.height <= 0:
        raise InputError(f'{name}: could not determine the video frame size')
    fps = info.fps
    if not fps and info.duration_s:
        fps = n_frames / info.duration_s
    indexed, truncated = _mp4_index(path)
    return VideoInfo(
        path=os.fspath(path),
        fps=float(fps or 25.0),
        n_frames=n_frames,
        width=info.width,
        height=info.height,
        has_audio=info.has_audio,
        duration_s=info.duration_s,
        video_codec=info.video_codec,
        audio_codec=info.audio_codec,
        indexed_frames=indexed,
        truncated=truncated,
    )


# Boxes on the way from 'moov' to a track's sample sizes (stsz) and handler type (hdlr).
_MP4_CONTAINERS = {b'trak', b'mdia', b'minf', b'stbl'}
# What an ISO-BMFF file (mp4, mov, m4v, 3gp) starts with; other containers are not parsed.
_MP4_FIRST_BOXES = {b'ftyp', b'styp', b'moov', b'mdat', b'wide', b'free', b'skip', b'pnot', b'uuid'}
_MP4_MAX_MOOV = 256 << 20  # a 'moov' is a few MB even for hours of video; more means garbage


def _mp4_boxes(data: bytes, start: int, end: int):
    """(type, payload start, payload end) of the boxes in data[start:end]; stops at a malformed one."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from('>I4s', data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                return
            (size,) = struct.unpack_from('>Q', data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind, pos + header, pos + size
        pos += size


def _mp4_video_samples(moov: bytes) -> int | None:
    """Sample count of the first video track ('vide' handler) in a 'moov' payload."""

    def walk(start, end, found):
        for kind, a, b in _mp4_boxes(moov, start, end):
            if kind == b'hdlr' and b - a >= 12:
                found['handler'] = moov[a + 8 : a + 12]
            elif kind == b'stsz' and b - a >= 12:
                found['samples'] = struct.unpack_from('>I', moov, a + 8)[0]
            elif kind in _MP4_CONTAINERS:
                walk(a, b, found)
        return found

    for kind, a, b in _mp4_boxes(moov, 0, len(moov)):
        if kind == b'trak':
            track = walk(a, b, {})
            if track.get('handler') == b'vide' and 'samples' in track:
                return int(track['samples'])
    return None


def _mp4_index(path: os.PathLike | str) -> tuple[int | None, bool]:
    """(video frames declared by the index, whether the file is cut short) of an ISO-BMFF file
    (mp4, mov, m4v, 3gp); (None, False) for other containers or anything unexpected.

    Reads only box headers and the 'moov' box. A file is cut short when a top-level box (typically
    'mdat', the frame data) claims to extend past the end of the file.
    """
    indexed, truncated = None, False
    try:
        with open(path, 'rb') as f:
            size = os.fstat(f.fileno()).st_size
            pos = 0
            while pos + 8 <= size:
                f.seek(pos)
                head = f.read(16)
                box, kind = struct.unpack_from('>I4s', head)
                header = 8
                if box == 1 and len(head) == 16:
                    (box,) = struct.unpack_from('>Q', head, 8)
                    header = 16
                elif box == 0:
                    box = size - pos
                if pos == 0 and kind not in _MP4_FIRST_BOXES:
                    return None, False  # not an ISO-BMFF file
                if box < header:
                    break
                if pos + box > size:
                    truncated = True
                if kind == b'moov' and box <= _MP4_MAX_MOOV and not truncated:
                    f.seek(pos + header)
                    indexed = _mp4_video_samples(f.read(box - header))
                pos += box
    except (OSError, struct.error, ValueError, RecursionError):
        return None, False
    return indexed, truncated


def has_audio(path: os.PathLike | str) -> bool:
    """True when the file has an audio stream (works for audio-only files too)."""
    info, _ = inspect_media(path)
    return info.has_audio


def iter_video_frames(
    path: os.PathLike | str, max_frames: int | None = None
) -> Iterator[np.ndarray]:
    """Yield the frames of a video as HxWx3 uint8 RGB arrays (writable), at most `max_frames`.

    Errors (missing file, not a video, no frames, nothing decodable) raise InputError naming the file;
    the file is probed first so that these come before any frame is produced. If the stream ends
    with fewer frames than the file holds (a damaged or truncated file; for an mp4 cut short after
    its index, the count the index declares), the frames so far are kept and a DamagedVideoWarning
    names the file and both counts.
    """
    name = describe(path)
    if max_frames is not None and max_frames < 0:
        raise ValueError(f'{name}: max_frames must be >= 0, got {max_frames}')
    info = probe_video(path)
    if max_frames == 0:
        return
    width, height = info.width, info.height
    # Same output options as imageio's ffmpeg reader (the reference's), so frames are identical; '-s'
    # pins the frame size we slice the byte stream by (a no-op when the probe is right, as it should
    # be, and a resize rather than garbled frames if it ever is not).
    args = [
        ffmpeg_exe(),
        '-hide_banner',
        '-nostdin',
        '-loglevel',
        'error',
        '-i',
        os.fspath(path),
        '-map',
        '0:V:0',
        '-f',
        'image2pipe',
        '-vcodec',
        'rawvideo',
        '-pix_fmt',
        'rgb24',
        '-s',
        f'{width}x{height}',
        '-',
    ]
    frame_bytes = width * height * 3
    with tempfile.TemporaryFile() as log:
        proc = track_process(
            subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        )
        n = 0
        try:
            while max_frames is None or n < max_frames:
                buf = proc.stdout.read(frame_bytes)
                if len(buf) < frame_bytes:
                    break  # end of stream (a partial frame means the decoder stopped mid-frame)
                yield np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3).copy()
                n += 1
        finally:
            # Early stop (the consumer wants no more frames), an error or an interrupt: no decoder
            # is left running. After a normal end of stream this just reaps the exited process.
            proc.stdout.close()
            stop_process(proc)
        rc = proc.returncode
        if max_frames is not None and n >= max_frames:
            return  # stopped on request; what follows in the file was not read
        log.seek(0)
        tail = stderr_tail(log.read(), 3)
        if n == 0:
            raise InputError(f'{name}: no frames could be decoded' + (f' ({tail})' if tail else ''))
        # The index's count only when the file is cut short: otherwise an edit list can make the
        # index list more samples than are meant to be shown.
        expected = max(info.n_frames, info.indexed_frames or 0) if info.truncated else info.n_frames
        # Fewer frames than packets with a clean decode is frame-rate conversion of a variable
        # frame rate video (phones), not damage; damage shows as an error or a cut-short file.
        if n < expected and (rc != 0 or tail or info.truncated):
            warnings.warn(
                f'{name}: decoded only {n} of {expected} frames; the file is damaged or truncated'
                + (f' (ffmpeg: {tail})' if tail else ''),
                DamagedVideoWarning,
                stacklevel=2,
            )
        elif rc != 0:
            warnings.warn(
                f'{name}: ffmpeg failed after decoding {n} frames; the file may be damaged '
                f'({tail or f"exit status {rc}"})',
                DamagedVideoWarning,
                stacklevel=2,
            )


def load_video_frames(path: os.PathLike | str, max_frames: int | None = None) -> list[np.ndarray]:
    """All frames (or the first `max_frames`) as a list of HxWx3 uint8 RGB arrays."""
    return list(iter_video_frames(path, max_frames))


def _fps_arg(fps: float, where: str) -> str:
    """ffmpeg rate string; 29.97 becomes 30000/1001 rather than a rounded float."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise OutputError(f'{where}: fps must be a number, got {fps!r}') from None
    if not math.isfinite(value) or value <= 0:
        raise OutputError(f'{where}: fps must be positive, got {fps!r}')
    frac = fractions.Fraction(value).limit_denominator(1001)
    return f'{frac.numerator}/{frac.denominator}'


def _pad_even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode='edge')


@functools.lru_cache(maxsize=None)
def _h264_encoder() -> str:
    """libx264 (CRF rate control, what the reference uses) when this ffmpeg has it, else "h264", which
    lets ffmpeg pick whatever h264 encoder it was built with (e.g. a system ffmpeg via IMAGEIO_FFMPEG_EXE)."""
    res = run_ffmpeg(['-encoders'])
    names = {
        line.split()[1]
        for line in res.stdout.decode('utf-8', 'replace').splitlines()
        if len(line.split()) > 1
    }
    return 'libx264' if 'libx264' in names else 'h264'


class VideoWriter:
    """Write RGB uint8 frames to an h264/yuv420p mp4, atomically, optionally adding audio at the end.

        with VideoWriter("out.mp4", fps=25, audio_from="driving.mp4") as w:
            for frame in frames:
                w.write(frame)

    All frames must have the size of the first one. `audio_from` (any file ffmpeg reads) supplies the
    first audio stream, copied without re-encoding when the container allows it (else AAC), cut to the
    video's length; a source without audio gives a silent output. If the block raises, or close() is
    never reached, nothing appears at `path`.
    """

    def __init__(
        self,
        path: os.PathLike | str,
        fps: float,
        *,
        crf: int = 18,
        audio_from: os.PathLike | str | None = None,
        preset: str = 'medium',
    ):
        self.path = os.path.abspath(os.fspath(path))
        self._name = describe(path)
        self._rate = _fps_arg(fps, self._name)
        self.fps = float(fps)
        self.crf = int(crf)
        self.preset = preset
        # The audio source is checked now, not after minutes of rendering.
        self.audio_from = (
            None if audio_from is None else check_input_file(audio_from, 'audio source')
        )
        self._audio_present = self.audio_from is not None and has_audio(self.audio_from)
        self.frames_written = 0
        self.frame_size: tuple[int, int] | None = None  # (height, width) of the input frames
        self._proc: subprocess.Popen | None = None
        self._log = None
        self._target: AtomicPath | None = None
        self._closed = False
        self._aborted = False

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> 'VideoWriter':
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.abort()
            return False
        self.close()
        return False

    def __del__(self):
        # Never publish an unfinished video; clean up the temp file and the encoder, and say so.
        # (Should __del__ not run, e.g. at interpreter exit, the AtomicPath's own finalizer stops
        # the encoder and removes the temp file.)
        try:
            if not getattr(self, '_closed', True):
                self.abort()
                if self.frames_written:
                    warnings.warn(
                        f'{self._name}: VideoWriter was never closed; the unfinished video '
                        'was discarded (use it as a context manager or call close())',
                        ResourceWarning,
                        stacklevel=2,
                    )
        except Exception:
            pass

    def _start(self, height: int, width: int) -> None:
        codec, exe = _h264_encoder(), ffmpeg_exe()
        out_h, out_w = height + height % 2, width + width % 2
        self._target = AtomicPath(self.path)
        args = [
            exe,
            '-hide_banner',
            '-nostdin',
            '-loglevel',
            'error',
            '-y',
            '-f',
            'rawvideo',
            '-pix_fmt',
            'rgb24',
            '-s',
            f'{out_w}x{out_h}',
            '-r',
            self._rate,
            '-i',
            '-',
            '-an',
            '-c:v',
            codec,
            '-pix_fmt',
            'yuv420p',
        ]
        if codec == 'libx264':
            args += ['-crf', str(self.crf), '-preset', self.preset]
        args += ['-movflags', '+faststart', self._target.tmp_path]
        # stderr goes to a file: a pipe nobody reads could fill up and deadlock the encoder.
        self._log = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log
            )
        except OSError as e:
            self._target.discard()
            raise OutputError(f'{self._name}: cannot start ffmpeg: {e}') from e
        # Discarding the temp file (abort, garbage collection, interpreter exit) stops the encoder.
        self._target.attach_process(self._proc)

    def _read_log(self) -> str:
        if self._log is None:
            return ''
        self._log.seek(0)
        return self._log.read().decode('utf-8', errors='replace')

    # -- writing ---------------------------------------------------------------------------------
    def write(self, frame: np.ndarray) -> None:
        """Append one HxWx3 uint8 RGB frame (HxW gray and HxWx4 RGBA are accepted too)."""
        if self._closed:
            raise OutputError(
                f'{self._name}: write() after the writer was '
                + ('aborted' if self._aborted else 'closed')
            )
        rgb = as_rgb_uint8(frame, f'{self._name} frame {self.frames_written}')
        h, w = rgb.shape[:2]
        if self.frame_size is None:
            self.frame_size = (h, w)
            self._start(h, w)
        elif (h, w) != self.frame_size:
            self.abort()
            raise OutputError(
                f'{self._name}: frame {self.frames_written} is {w}x{h}, but the video is '
                f'{self.frame_size[1]}x{self.frame_size[0]} (all frames must match)'
            )
        try:
            self._proc.stdin.write(_pad_even(rgb).tobytes())
        except (BrokenPipeError, OSError):
            self._proc.wait()
            log = self._read_log()
            self.abort()
            raise_output_failure(self.path, 'h264 encoding (ffmpeg)', log)
        self.frames_written += 1

    def write_many(self, frames: Iterable[np.ndarray]) -> None:
        for frame in frames:
            self.write(frame)

    def close(self) -> str:
        """Finish encoding, add audio if requested, move the file into place; returns its path."""
        if self._aborted:
            raise OutputError(
                f'{self._name}: the writer was aborted after an error; no video created'
            )
        if self._closed:
            return self.path
        if self.frames_written == 0:
            self.abort()
            raise OutputError(f'{self._name}: no frames were written; no video created')
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        # ffmpeg finishing a long video takes a while: a stop request drops it (no output).
        while True:
            try:
                rc = self._proc.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                try:
                    stopping.check()
                except stopping.Stopped:
                    self.abort()
                    raise
        if rc != 0:
            log = self._read_log()
            self.abort()
            raise_output_failure(self.path, 'h264 encoding (ffmpeg)', log)
        try:
            if self._audio_present:
                with atomic_write_path(self.path) as muxed:
                    _mux_audio(self._target.tmp_path, self.audio_from, muxed, self.path)
                self._target.discard()
            else:
                self._target.commit()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._cleanup()
        return self.path

    def abort(self) -> None:
        """Stop the encoder and delete the partial output; `path` is left as it was.

        Safe to call more than once and from cleanup code: it does not raise for the encoder.
        """
        self._closed = self._aborted = True
        if self._proc is not None:
            # Kill before closing stdin: on end of input ffmpeg would finish the file instead
            # (and +faststart rewrites it), which is work thrown away.
            stop_process(self._proc)
        if self._target is not None:
            self._target.discard()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def write_video(
    path: os.PathLike | str,
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    audio_from: os.PathLike | str | None = None,
    crf: int = 18,
) -> str:
    """Write all `frames` with a VideoWriter; returns the output path."""
    with VideoWriter(path, fps, crf=crf, audio_from=audio_from) as writer:
        writer.write_many(frames)
    return writer.path


def _mux_audio(video: str, audio_source: str, out: str, shown: str) -> None:
    """Copy the video stream of `video` and the first audio stream of `audio_source` into `out`.

    The audio input is trimmed to the video's duration. `-shortest` is not used: with a copied
    video stream it cuts at the muxer's interleaving granularity and drops the last video frames
    (8 frames at 10 fps with 1 s of audio came out as 5).
    """
    duration = probe_video(video).duration_s
    trim = ['-t', f'{duration:.6f}'] if duration else []
    base = [
        '-y',
        '-loglevel',
        'error',
        '-i',
        video,
        *trim,
        '-i',
        audio_source,
        '-map',
        '0:v:0',
        '-map',
        '1:a:0',
        '-c:v',
        'copy',
        '-movflags',
        '+faststart',
    ]
    res = run_ffmpeg(base + ['-c:a', 'copy', out])
    if res.returncode != 0:
        # e.g. PCM audio from a .mov/.avi cannot be stream-copied into mp4: re-encode it.
        res = run_ffmpeg(base + ['-c:a', 'aac', '-b:a', '192k', out])
    if res.returncode != 0:
        raise_output_failure(shown, f'adding audio from {describe(audio_source)}', res.stderr)


def add_audio_from(
    video_path: os.PathLike | str,
    audio_source: os.PathLike | str,
    out_path: os.PathLike | str | None = None,
) -> bool:
    """Mux the first audio stream of `audio_source` into `video_path` (in place unless `out_path`).

    Returns True when audio was added, False when `audio_source` has none (then `out_path`, if given,
    receives a plain copy of the video). Atomic either way.
    """
    src = check_input_file(video_path, 'video')
    check_input_file(audio_source, 'audio source')
    dest = os.fspath(out_path) if out_path is not None else src
    if not has_audio(audio_source):
        if out_path is not None:
            with atomic_write_path(dest) as tmp, open(src, 'rb') as fin, open(tmp, 'wb') as fout:
                while chunk := fin.read(1 << 20):
                    fout.write(chunk)
        return False
    with atomic_write_path(dest) as tmp:
        _mux_audio(src, os.fspath(audio_source), tmp, dest)
    return True


def write_gif(
    path: os.PathLike | str, frames: Iterable[np.ndarray], fps: float, *, loop: int = 0
) -> str:
    """Write an animated GIF with a palette computed from all frames (see gif.GifWriter, which
    streams: memory stays flat however many frames). `loop=0` repeats forever. Atomic; returns
    the output path."""
    from .gif import GifWriter

    writer = GifWriter(path, fps, loop=loop)
    try:
        for frame in frames:
            writer.write(frame)
    except BaseException:
        writer.abort()
        raise
    return writer.close()
