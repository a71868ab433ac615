"""Stage "write": output names, labels, comparison panels, encoders, progress bars, timings.

Every output (the animation, the driving | source | result comparison, the GIF, or in-memory
lists) is a `Sink` with its own thread and a bounded queue: per-frame host work (labels, panels,
resizes) and the pipe into its ffmpeg run in parallel with each other and with the device.
`Outputs.close()` finishes them all; `abort()` (any exception, or a stop request: Ctrl-C, SIGTERM,
see liveportrait_jax.stopping) stops the encoders and leaves no partial file.
"""

import contextlib
import os
import queue
import signal
import threading
import time

import cv2
import numpy as np

from liveportrait_jax import stopping
from liveportrait_jax.demo import RANDOM_LABEL
from liveportrait_jax.io import (
    MotionTemplate,
    VideoWriter,
    concat_side_by_side,
    save_image,
    save_template,
)
from liveportrait_jax.io.gif import GifWriter

GIF_WIDTH = 256
QUEUE_CHUNKS = 2  # chunks waiting per sink (bounded: a slow encoder slows the device, not RAM)


# --- timings -----------------------------------------------------------------------------------


class Stages:
    """Seconds per stage: wall time, and host CPU time summed over the threads doing the work.

    `with stages.host('landmarks'):` around host work in any thread adds that thread's CPU time
    (time.thread_time) to the stage, so stages running in parallel threads are each counted once.
    ffmpeg (decoding, encoding) runs in child processes, counted as 'ffmpeg (child processes)'.
    """

    def __init__(self):
        self.wall, self.cpu = {}, {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def host(self, name):
        t, c = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t, time.thread_time() - c)

    def add(self, name, wall=0.0, cpu=0.0):
        with self._lock:
            self.wall[name] = self.wall.get(name, 0.0) + wall
            self.cpu[name] = self.cpu.get(name, 0.0) + cpu

    def timed(self, iterator, name):
        """Wraps an iterator: the time spent producing each item is added to `name`."""
        it = iter(iterator)
        try:
            while True:
                with self.host(name):
                    try:
                        item = next(it)
                    except StopIteration:
                        return
                yield item
        finally:
            close = getattr(it, 'close', None)
            if close is not None:
                close()


# --- labels, panels, names -----------------------------------------------------------------------


def burn_label(frame, text=RANDOM_LABEL):
    """Writes `text` in the top-left corner (white on a dark box), scaled to the frame."""
    out = np.ascontiguousarray(frame).copy()
    scale = max(0.35, out.shape[1] / 900.0)
    thick = max(1, int(round(scale * 2)))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    cv2.rectangle(out, (0, 0), (w + 8, h + base + 8), (0, 0, 0), -1)
    cv2.putText(
        out, text, (4, h + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA
    )
    return out


def at_size(crop, size):
    """An animated crop at the crop size `size` (the networks' output may be smaller)."""
    return cv2.resize(crop, (size, size)) if crop.shape[0] != size else crop


def stem(path):
    return os.path.splitext(os.path.basename(os.fspath(path)))[0]


def output_paths(output_dir, source_name, driving_name, options, *, still):
    """Where `animate` writes: `<source>--<driving>.mp4` (.jpg for two images), `_concat`, `.gif`."""
    base = os.path.join(output_dir, f'{stem(source_name)}--{stem(driving_name)}')
    ext = '.jpg' if still else '.mp4'
    return {
        'output': base + ext,
        'concat': base + '_concat' + ext if options.flag_write_concat else None,
        'gif': base + '.gif' if options.flag_write_gif and not still else None,
    }


def audio_source(options, driving, source):
    """The input whose audio the outputs carry (options.audio_priority first), or None."""
    candidates = [(driving.has_audio, driving.name), (source.has_audio, source.name)]
    if options.audio_priority == 'source':
        candidates.reverse()
    return next((path for has, path in candidates if has), None)


def save_driving_template(path, motion, eye, lip, fps):
    """The driving motion as a template (.pkl) in the reference's current layout."""
    keys = ('R', 'exp', 't', 'scale', 'kp', 'x_s')
    return save_template(
        path, MotionTemplate(**{k: motion[k] for k in keys}, c_eyes=eye, c_lip=lip, fps=fps)
    )


def progress_bar(total, desc, enabled):
    """(update(n), close()) of a tqdm bar, or no-ops."""
    if not enabled:
        return (lambda n: None), (lambda: None)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit='frame', leave=False)
    return bar.update, bar.close


# --- sinks -------------------------------------------------------------------------------------


class Sink:
    """One output in its own thread: `prepare(item) -> frame` then `writer.write(frame)`.

    writer: an object with write/close/abort (VideoWriter, GifWriter) or a list (in memory).
    """

    def __init__(self, name, writer, prepare, stages):
        self.name, self.writer, self.prepare, self.stages = name, writer, prepare, stages
        self.queue = queue.Queue(maxsize=QUEUE_CHUNKS)
        self.error = None
        self.thread = threading.Thread(target=self._run, name=f'write-{name}', daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                items = self.queue.get(timeout=0.1)
            except queue.Empty:  # never wait forever: a stop ends the thread (put/close raise)
                if stopping.event.is_set():
                    signum = stopping.requested() or signal.SIGTERM
                    self.error = self.error or stopping.Stopped(signum)
                    return
                continue
            if items is None:
                return
            if self.error is not None:
                continue  # drain after a failure; the error is raised by put/close
            try:
                with self.stages.host(f'write: {self.name}'):
                    for item in items:
                        stopping.check()  # a stop ends the encoding; close() raises it
                        frame = self.prepare(item)
                        if isinstance(self.writer, list):
                            self.writer.append(frame)
                        else:
                            self.writer.write(frame)
            except BaseException as e:
                self.error = e

    def put(self, items):
        # Waits for room in bounded steps: a stop request is seen while the encoder is behind.
        while True:
            self._check()
            stopping.check()
            try:
                return self.queue.put(items, timeout=0.1)
            except queue.Full:
                continue

    def _check(self):
        if self.error is not None:
            raise self.error

    def close(self):
        self.put(None)
        while self.thread.is_alive():  # the encoder's backlog; it ends at a stop request too
            self.thread.join(0.1)
        self._check()
        stopping.check()
        if not isinstance(self.writer, list):
            self.writer.close()

    def abort(self):
        self.error = self.error or RuntimeError('aborted')
        if stopping.requested() is not None and not isinstance(self.writer, list):
            # Stopping: kill the encoder first, so a thread blocked writing into its pipe fails at
            # once instead of waiting for ffmpeg to take the frame.
            with contextlib.suppress(Exception):
                self.writer.abort()
        with contextlib.suppress(queue.Empty):
            while True:
                self.queue.get_nowait()
        self.queue.put(None)
        self.thread.join()
        if not isinstance(self.writer, list):
            self.writer.abort()


class Outputs:
    """The sinks of one animation, fed one chunk at a time.

    A chunk item is a dict: 'frame' (H, W, 3) the finished frame (pasted back, or the crop),
    'crop' the animated crop at dsize, 'driving' / 'source' the 256 crops for the comparison (when
    asked). Labels are burned into every written frame when `label` is set.
    """

    def __init__(self, sinks, stages):
        self.sinks, self.stages = sinks, stages

    def submit(self, items):
        for s in self.sinks.values():
            s.put(items)

    def close(self):
        try:
            for s in self.sinks.values():
                s.close()
        except BaseException:
            self.abort()
            raise

    def abort(self):
        for s in self.sinks.values():
            with contextlib.suppress(Exception):
                s.abort()


def labelled(label, fn):
    return (lambda item: burn_label(fn(item), label)) if label else fn


def comparison_panel(item):
    return concat_side_by_side([item.get('driving'), item.get('source'), item['crop']])


def gif_frame(item):
    f = item['frame']
    return cv2.resize(f, (GIF_WIDTH, int(GIF_WIDTH * f.shape[0] / f.shape[1])))


def file_outputs(paths, fps, audio_from, label, stages, *, still):
    """Outputs writing `paths` (see output_paths): videos, or lists saved as images by
    `save_stills` for two still inputs."""
    sinks = {}
    if still:
        sinks['output'] = Sink('output', [], labelled(label, lambda it: it['frame']), stages)
        if paths['concat']:
            sinks['concat'] = Sink('concat', [], labelled(label, comparison_panel), stages)
        return Outputs(sinks, stages)
    sinks['output'] = Sink(
        'output',
        VideoWriter(paths['output'], fps, audio_from=audio_from),
        labelled(label, lambda it: it['frame']),
        stages,
    )
    if paths['concat']:
        sinks['concat'] = Sink(
            'concat',
            VideoWriter(paths['concat'], fps, audio_from=audio_from),
            labelled(label, comparison_panel),
            stages,
        )
    if paths['gif']:
        sinks['gif'] = Sink('gif', GifWriter(paths['gif'], fps), labelled(label, gif_frame), stages)
    return Outputs(sinks, stages)


def save_stills(outputs, paths):
    """Writes the image outputs of two still inputs (after Outputs.close)."""
    save_image(paths['output'], outputs.sinks['output'].writer[0])
    if 'concat' in outputs.sinks:
        save_image(paths['concat'], outputs.sinks['concat'].writer[0])
