"""Locate and run the ffmpeg binary, and read a media file's header (streams, fps, size, frame count).

We use the ffmpeg that ships inside the imageio-ffmpeg wheel (works offline, no system install); the
IMAGEIO_FFMPEG_EXE environment variable overrides it. That wheel has no ffprobe, so probing parses
the stream listing ffmpeg prints to stderr, and counts frames with a stream copy to the null muxer
(demuxes packets without decoding, so it is fast even for long videos).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from typing import Sequence

from .. import stopping
from .atomic import stop_process, track_process
from .errors import InputError, OutputError, check_input_file, describe


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary; raises RuntimeError with install advice if there is none."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # ImportError or "no ffmpeg found"
        raise RuntimeError(
            'ffmpeg is needed for video input/output but was not found: install the imageio-ffmpeg '
            f'wheel (pip install imageio-ffmpeg) or set IMAGEIO_FFMPEG_EXE to an ffmpeg binary ({e})'
        ) from e


def run_ffmpeg(args: Sequence[str]) -> subprocess.CompletedProcess:
    """Run ffmpeg with `args` (without the program name); stdin is closed so it never waits for keys.

    The process is tracked (io.atomic) and a stop request (liveportrait_jax.stopping) kills it and
    raises Stopped: an ffmpeg left running could write its output after the process is gone."""
    cmd = [ffmpeg_exe(), '-hide_banner', '-nostdin', *args]
    proc = track_process(
        subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    )
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                stopping.check()
    except BaseException:
        stop_process(proc)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def stderr_tail(text: str | bytes, n_lines: int = 6) -> str:
    """Last lines of an ffmpeg log, to quote in an error without flooding it."""
    if isinstance(text, bytes):
        text = text.decode('utf-8', errors='replace')
    lines = [ln.strip() for ln in text.replace('\r', '\n').splitlines() if ln.strip()]
    return ' | '.join(lines[-n_lines:])


@dataclasses.dataclass(frozen=True)
class StreamInfo:
    """What the header of a media file says; no decoding involved."""

    path: str
    has_video: bool
    has_audio: bool
    width: int = 0  # as decoded frames come out, i.e. after the rotation ffmpeg applies
    height: int = 0
    fps: float = 0.0  # 0.0 when the header gives none
    duration_s: float | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    rotation: int = 0  # degrees from the display matrix; ffmpeg rotates decoded frames by it


_NUM = r'(\d+(?:\.\d+)?)(k?)'


def _number(value: str, kilo: str) -> float:
    return float(value) * (1000.0 if kilo else 1.0)


def _input_section(log: str) -> list[str]:
    """Lines describing input #0, up to where ffmpeg starts describing the output."""
    lines = log.replace('\r', '\n').splitlines()
    out, inside = [], False
    for line in lines:
        if line.startswith('Input #0'):
            inside = True
        elif inside and (
            line.startswith('Output #')
            or line.startswith('Stream mapping')
            or line.startswith('Input #')
        ):
            break
        if inside:
            out.append(line)
    return out


def parse_header(path: str, log: str) -> StreamInfo:
    """Parse ffmpeg's stream listing for input #0 (see module docstring)."""
    lines = _input_section(log)
    info: dict = dict(path=path, has_video=False, has_audio=False)
    m = re.search(r'Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)', '\n'.join(lines))
    if m:
        info['duration_s'] = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    for i, line in enumerate(lines):
        if 'Stream #' not in line:
            continue
        if ': Audio:' in line and not info['has_audio']:
            info['has_audio'] = True
            info['audio_codec'] = line.split(': Audio:', 1)[1].split()[0].rstrip(',')
        # Cover art in mp3/m4a shows up as a one-frame video stream; it is not the video.
        elif ': Video:' in line and '(attached pic)' not in line and not info['has_video']:
            info['has_video'] = True
            desc = line.split(': Video:', 1)[1]
            info['video_codec'] = desc.split()[0].rstrip(',')
            # "512x512," / "64x48 [SAR 1:1 ...]"; the lookahead skips hex tags such as "0x31637661)".
            size = re.search(r'[\s,](\d+)x(\d+)(?=[\s,\[]|$)', desc)
            if size:
                info['width'], info['height'] = int(size.group(1)), int(size.group(2))
            rate = re.search(_NUM + r' fps', desc) or re.search(_NUM + r' tbr', desc)
            if rate:
                info['fps'] = _number(*rate.groups())
            # Side data of this stream follows on the next lines, until the next stream.
            for extra in lines[i + 1 :]:
                if 'Stream #' in extra:
                    break
                rot = re.search(r'rotation of (-?\d+(?:\.\d+)?) degrees', extra)
                if rot:
                    info['rotation'] = int(round(float(rot.group(1)))) % 360
            if info.get('rotation', 0) in (90, 270):
                info['width'], info['height'] = info.get('height', 0), info.get('width', 0)
    return StreamInfo(**info)


def inspect_media(
    path: os.PathLike | str, *, count_video_frames: bool = False
) -> tuple[StreamInfo, int | None]:
    """Header info, plus the number of video packets (= frames) when `count_video_frames` is set.

    Raises InputError when ffmpeg cannot open the file at all.
    """
    p = check_input_file(path, 'media')
    if count_video_frames:
        # '0:V:0' (capital V) = first video stream that is not cover art.
        res = run_ffmpeg(['-i', p, '-map', '0:V:0?', '-c', 'copy', '-f', 'null', '-'])
    else:
        res = run_ffmpeg(['-i', p])  # exits 1 ("no output file") after printing the header
    log = res.stderr.decode('utf-8', errors='replace')
    if 'Input #0' not in log:
        raise InputError(
            f'{describe(path)}: not a readable audio/video file ({stderr_tail(log, 2)})'
        )
    info = parse_header(p, log)
    n_frames = None
    if count_video_frames and info.has_video:
        if res.returncode != 0:
            raise InputError(f'{describe(path)}: cannot read video stream ({stderr_tail(log, 3)})')
        counts = re.findall(r'frame=\s*(\d+)', log)
        n_frames = int(counts[-1]) if counts else 0
    return info, n_frames


def raise_output_failure(path: os.PathLike | str, what: str, log: str | bytes) -> None:
    raise OutputError(f'{describe(path)}: {what} failed: {stderr_tail(log)}')
