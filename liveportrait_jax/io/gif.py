"""Streaming GIF writer: memory flat in the number of frames.

A good GIF palette is computed from all frames (ffmpeg's palettegen), so frames cannot be encoded
as they arrive. Piping them through `split, palettegen, paletteuse` in one ffmpeg makes ffmpeg
buffer every frame until the palette is known; instead the frames are written losslessly (FFV1) to
a temporary file as they come, and `close()` runs palettegen and then paletteuse over that file:
two streaming passes, the output written atomically.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

import numpy as np

from .atomic import AtomicPath, stop_process, track_process, track_temp_dir
from .errors import OutputError, describe
from .ffmpeg import ffmpeg_exe, raise_output_failure, run_ffmpeg
from .images import as_rgb_uint8


class GifWriter:
    """`write(frame)` (H, W, 3) uint8 RGB frames of one size, then `close()` (or `abort()`)."""

    def __init__(self, path: os.PathLike | str, fps: float, *, loop: int = 0):
        self.path = os.path.abspath(os.fspath(path))
        self._name = describe(path)
        self.fps, self.loop = float(fps), int(loop)
        self._dir = track_temp_dir(tempfile.TemporaryDirectory(prefix='liveportrait-gif-'))
        self._frames = os.path.join(self._dir.name, 'frames.mkv')
        self._proc = None
        self._log = tempfile.TemporaryFile()
        self._size = None
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        rgb = as_rgb_uint8(frame, f'{self._name} frame {self.frames_written}')
        if self._proc is None:
            self._size = rgb.shape[:2]
            h, w = self._size
            args = [
                ffmpeg_exe(), '-hide_banner', '-nostdin', '-loglevel', 'error', '-y',
                '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', f'{w}x{h}', '-r', f'{self.fps:g}',
                '-i', '-', '-c:v', 'ffv1', self._frames,
            ]  # fmt: skip
            self._proc = track_process(
                subprocess.Popen(
                    args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log
                )
            )
        elif rgb.shape[:2] != self._size:
            raise OutputError(
                f'{self._name}: frame {self.frames_written} is {rgb.shape[1]}x{rgb.shape[0]}, '
                f'expected {self._size[1]}x{self._size[0]}'
            )
        try:
            self._proc.stdin.write(rgb.tobytes())
        except BrokenPipeError:
            self._fail('GIF frames (ffmpeg)')
        self.frames_written += 1

    def _fail(self, what):
        self._log.seek(0)
        log = self._log.read()
        self.abort()
        raise_output_failure(self.path, what, log)

    def _run(self, args, what):
        res = run_ffmpeg(['-loglevel', 'error', '-y', *args])  # tracked, ends on a stop
        if res.returncode != 0:
            self.abort()
            raise_output_failure(self.path, what, res.stderr)

    def close(self) -> str:
        if self._proc is None:
            self.abort()
            raise OutputError(f'{self._name}: no frames given; no GIF created')
        self._proc.stdin.close()
        if self._proc.wait() != 0:
            self._fail('GIF frames (ffmpeg)')
        palette = os.path.join(self._dir.name, 'palette.png')
        self._run(['-i', self._frames, '-vf', 'palettegen=stats_mode=full', palette], 'GIF palette')
        target = AtomicPath(self.path)
        try:
            self._run(
                ['-i', self._frames, '-i', palette, '-lavfi', 'paletteuse', '-loop', str(self.loop),
                 '-f', 'gif', target.tmp_path],
                'GIF encoding (ffmpeg)',
            )  # fmt: skip
            target.commit()
        except BaseException:
            target.discard()
            raise
        finally:
            self._cleanup()
        return self.path

    def abort(self) -> None:
        """Stops the encoder and removes the temporary frames; nothing is written at `path`."""
        if self._proc is not None:
            stop_process(self._proc)
        self._cleanup()

    def _cleanup(self):
        if self._proc is not None and self._proc.stdin and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        self._log.close()
        self._dir.cleanup()
