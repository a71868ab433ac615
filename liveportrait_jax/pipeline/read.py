"""Stage "read": the animation's inputs as re-iterable frame streams (decode ahead in a thread).

An input is opened once (`open_media`: probe, kind, frame count, fps, audio) and then read as many
times as the passes need (`Media.frames()`): a video is decoded again on each pass instead of being
held in memory, so memory does not grow with its length. Each pass decodes ahead in its own thread
(`prefetch`), so decoding overlaps with landmarks, cropping and device work.
"""

import dataclasses
import os
import queue
import tempfile
import threading
from typing import Callable, Optional

import numpy as np

from liveportrait_jax import stopping
from liveportrait_jax.io import InputError, iter_video_frames, load_image, probe_video
from liveportrait_jax.io.templates import DEFAULT_MAX_TEMPLATE_FRAMES, load_template

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
VIDEO_EXTS = ('.mp4', '.mov', '.avi', '.webm', '.mkv', '.m4v', '.gif')
TEMPLATE_EXTS = ('.pkl',)
SCRIPT_EXTS = ('.yaml', '.yml', '.json')  # keyframed motion scripts (pipeline/motion_script.py)
PREFETCH_FRAMES = 8  # decoded frames buffered ahead of their consumer (8 x 6 MB at 1080p)


def kind_of(path):
    """'image', 'video', 'template' or 'script' from the file name; a clear error otherwise."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise InputError(f'{p!r}: file not found')
    ext = os.path.splitext(p)[1].lower()
    if ext in IMAGE_EXTS:
        return 'image'
    if ext in VIDEO_EXTS:
        return 'video'
    if ext in TEMPLATE_EXTS:
        return 'template'
    if ext in SCRIPT_EXTS:
        return 'script'
    raise InputError(
        f'{p!r}: unsupported file type {ext or "(no extension)"}; expected an image '
        f'({", ".join(IMAGE_EXTS)}), a video ({", ".join(VIDEO_EXTS)}), a motion '
        f'template (.pkl) or a motion script ({", ".join(SCRIPT_EXTS)})'
    )


@dataclasses.dataclass
class Media:
    """One input. `frames()` yields its (H, W, 3) uint8 RGB frames from the start, each call anew.

    kind: 'image', 'video', 'template' (no frames, only `template`) or 'script' (no frames, only
    `script`, a motion_script.MotionScript: keyframed edits of the source's own motion).
    n_frames: the frames the input says it has (at most max_frames); a damaged video may yield
    fewer (io warns), so passes count what they actually get.
    """

    name: str
    kind: str
    n_frames: int
    fps: Optional[float] = None
    has_audio: bool = False
    template: object = None  # io.MotionTemplate
    script: object = None  # motion_script.MotionScript
    size: Optional[tuple] = None  # (width, height) of the frames; None for a template
    _open: Optional[Callable] = dataclasses.field(default=None, repr=False)

    @property
    def is_video(self):
        return self.n_frames > 1 if self.kind in ('template', 'script') else self.kind == 'video'

    def frames(self, limit=None, *, ahead=PREFETCH_FRAMES):
        """Iterator over the first `limit` frames (all when None), decoded `ahead` in a thread."""
        if self._open is None:
            raise ValueError(f'{self.name!r}: a motion {self.kind} has no frames')
        n = self.n_frames if limit is None else min(limit, self.n_frames)
        it = self._open(n)
        return prefetch(it, ahead) if ahead and self.kind == 'video' else it


def open_media(path, *, max_frames=None, max_template_frames=DEFAULT_MAX_TEMPLATE_FRAMES):
    """Probes `path` (image, video, motion template or script) without decoding its frames."""
    kind = kind_of(path)
    name = os.fspath(path)
    if kind == 'template':
        t = load_template(path, max_frames=max_template_frames)
        n = t.n_frames if max_frames is None else min(t.n_frames, int(max_frames))
        return Media(name, 'template', n, t.fps, template=t)
    if kind == 'script':
        from liveportrait_jax.pipeline.motion_script import load_script

        s = load_script(path)
        n = s.n_frames if max_frames is None else min(s.n_frames, int(max_frames))
        return Media(name, 'script', n, s.fps, script=s)
    if kind == 'image':
        image = load_image(path)  # one frame: read now, so errors come before any work
        size = (image.shape[1], image.shape[0])
        return Media(name, 'image', 1, size=size, _open=lambda n: iter([image][:n]))
    info = probe_video(path)
    n = info.n_frames if max_frames is None else min(info.n_frames, int(max_frames))
    return Media(
        name,
        'video',
        n,
        info.fps,
        info.has_audio,
        size=(info.width, info.height),
        _open=lambda n: iter_video_frames(path, max_frames=n),
    )


def media_from_frames(frames, *, name, is_video=None, fps=None):
    """An in-memory input: (N, H, W, 3) uint8 RGB frames (or a list); N = 1 is an image."""
    if len(frames) == 0:
        raise InputError(f'{name!r}: no frames')
    is_video = len(frames) > 1 if is_video is None else is_video
    for i, f in enumerate(frames):
        check_frame(f, name, i)
    return Media(
        name,
        'video' if is_video else 'image',
        len(frames),
        fps,
        size=(frames[0].shape[1], frames[0].shape[0]),
        _open=lambda n: (np.asarray(frames[i]) for i in range(n)),
    )


def check_frame(frame, name, index=None):
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        where = f'{name!r}' + ('' if index is None else f', frame {index}')
        raise InputError(
            f'{where}: frames must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}'
        )
    return frame


class DiskFrames:
    """Frames of one size that a pass keeps for a later one, in an unnamed temporary file.

    The driving video's 256 crops are needed again only for the comparison video: keeping them on
    disk (196 kB a frame) costs far less than decoding and cropping the video a third time, and
    memory stays flat. The file has no name (unlinked at creation), so it disappears with the
    process however it ends.
    """

    def __init__(self):
        self.file = tempfile.TemporaryFile(prefix='liveportrait-frames-')
        self.shape, self.n = None, 0

    def append(self, frame):
        frame = np.ascontiguousarray(frame, np.uint8)
        if self.shape is None:
            self.shape = frame.shape
        elif frame.shape != self.shape:
            raise ValueError(f'DiskFrames: frame of shape {frame.shape}, expected {self.shape}')
        self.file.write(frame.tobytes())
        self.n += 1

    def frames(self, limit=None):
        """Yields the frames in order (at most `limit`), reading the file from the start."""
        n = self.n if limit is None else min(limit, self.n)
        size = int(np.prod(self.shape)) if self.shape else 0
        self.file.flush()
        self.file.seek(0)
        for _ in range(n):
            yield np.frombuffer(self.file.read(size), np.uint8).reshape(self.shape)

    def close(self):
        self.file.close()


_DONE = object()


def prefetch(iterable, depth=PREFETCH_FRAMES):
    """Runs `iterable` in a daemon thread, `depth` items ahead of the consumer.

    Exceptions are re-raised in the consumer. Closing the returned generator (or an exception in
    the consumer) stops the thread and closes `iterable`, so a video's ffmpeg decoder is killed.
    On a stop request (liveportrait_jax.stopping) the thread ends and the consumer raises Stopped.
    """
    q = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce():
        it = iter(iterable)
        try:
            for item in it:
                if stopping.event.is_set():
                    return  # the consumer raises Stopped
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            _put(q, _DONE, stop)
        except BaseException as e:  # handed to the consumer
            _put(q, e, stop)
        finally:
            close = getattr(it, 'close', None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name='decode-ahead', daemon=True)
    thread.start()

    def consume():
        try:
            while True:
                try:
                    item = q.get(timeout=0.1)
                except queue.Empty:  # a decoder stuck in a long read: the stop is seen anyway
                    stopping.check()
                    continue
                stopping.check()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            # On a stop, a producer busy in one long item (a landmark block) is not waited for:
            # it is a daemon, and the exit kills the decoders it may hold (io.atomic).
            thread.join(0.2 if stopping.requested() else None)

    return consume()


def _put(q, item, stop):
    while not stop.is_set() and not stopping.event.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue
