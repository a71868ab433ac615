"""Write-to-temp-then-rename, so a crash or bad input never leaves a half-written output behind.

The temporary file lives in the destination directory (os.replace is only atomic within one file
system) and keeps the destination's extension, because encoders such as ffmpeg and cv2.imencode
choose the container/format from the file name.

Cleanup does not depend on the caller reaching discard(): every temporary file is also removed when
its AtomicPath is garbage-collected uncommitted, and at interpreter exit (weakref.finalize), after
killing the encoder processes attached to it. Child processes registered with track_process (e.g.
decoders) are killed at interpreter exit too. That covers the normal ways out of the process: return,
exceptions, KeyboardInterrupt, stop requests (liveportrait_jax.stopping: Stopped raised at a safe
point, or the watchdog's forced exit, which runs discard_everything first); only SIGKILL and a hard
crash can leave a hidden '.<name>.*.partial.<ext>' file behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import tempfile
import weakref
from typing import Iterator

from .. import stopping
from .errors import OutputError, describe


def _current_umask() -> int:
    # Linux exposes the umask read-only; elsewhere os.umask can only be read by setting it, which
    # briefly changes it for other threads, so that is the fallback.
    with contextlib.suppress(OSError, ValueError):
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Child processes (ffmpeg encoders and decoders) of this process that are killed at interpreter exit
# if still running; a WeakSet, so finished and collected ones drop out by themselves.
_LIVE_PROCESSES: weakref.WeakSet = weakref.WeakSet()


def stop_process(proc: subprocess.Popen) -> None:
    """Kill `proc` if it is still running and reap it; never raises."""
    with contextlib.suppress(Exception):
        if proc.poll() is None:
            proc.kill()
    with contextlib.suppress(Exception):
        proc.wait()
    # Close our pipe ends too; a write buffer that cannot be flushed any more is dropped.
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(Exception):
                pipe.close()


def track_process(proc: subprocess.Popen) -> subprocess.Popen:
    """Register a child process to be killed at interpreter exit if it is still running."""
    _LIVE_PROCESSES.add(proc)
    return proc


@atexit.register
def _stop_live_processes() -> None:
    for proc in list(_LIVE_PROCESSES):
        stop_process(proc)


# Temporary files not yet committed or discarded, and scratch directories (GIF frames); WeakSets,
# so collected ones drop out.
_PENDING: weakref.WeakSet = weakref.WeakSet()
_TEMP_DIRS: weakref.WeakSet = weakref.WeakSet()


def track_temp_dir(directory: tempfile.TemporaryDirectory) -> tempfile.TemporaryDirectory:
    """Register a scratch directory to be removed by discard_everything (a forced exit skips the
    TemporaryDirectory's own finaliser)."""
    _TEMP_DIRS.add(directory)
    return directory


def discard_everything() -> None:
    """Kill every tracked child process and remove every pending temporary file: what a stop that
    cannot wait for the unwinding (stopping's watchdog, a third signal) runs before os._exit."""
    for target in list(_PENDING):
        with contextlib.suppress(Exception):
            target._finalizer()
    _stop_live_processes()
    for directory in list(_TEMP_DIRS):
        with contextlib.suppress(Exception):
            directory.cleanup()


stopping.add_emergency_cleanup(discard_everything)


def _remove_temp(tmp_path: str, processes: list) -> None:
    """Finalizer of an AtomicPath: stop its writers first (one still running could recreate the
    file, e.g. ffmpeg's +faststart second pass), then remove the file."""
    while processes:
        stop_process(processes.pop())
    with contextlib.suppress(OSError):
        os.remove(tmp_path)


class AtomicPath:
    """A reserved temporary sibling of `final_path`; call commit() to publish it or discard() to drop it.

    Used directly by writers whose lifetime spans several calls (VideoWriter); one-shot writers use
    the atomic_write_path context manager below. A process writing the file can be attached
    (attach_process) so that discard() stops it before removing the file. An AtomicPath that is
    garbage-collected, or still pending at interpreter exit, is discarded.
    """

    def __init__(self, final_path: os.PathLike | str):
        final = os.path.abspath(os.fspath(final_path))
        if os.path.isdir(final):
            raise OutputError(
                f'{describe(final_path)}: is a directory, expected a file path to write'
            )
        directory = os.path.dirname(final)
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise OutputError(f'{describe(final_path)}: cannot create output directory: {e}') from e
        stem, ext = os.path.splitext(os.path.basename(final))
        try:
            # Hidden name (leading dot) so file browsers and globbing for outputs ignore it.
            fd, tmp = tempfile.mkstemp(prefix=f'.{stem}.', suffix=f'.partial{ext}', dir=directory)
        except OSError as e:
            raise OutputError(
                f'{describe(final_path)}: cannot create a temporary file next to it: {e}'
            ) from e
        self._processes: list[subprocess.Popen] = []
        self._finalizer = weakref.finalize(self, _remove_temp, tmp, self._processes)
        _PENDING.add(self)
        os.close(fd)
        self.final_path = final
        self.tmp_path = tmp
        self._done = False

    def attach_process(self, proc: subprocess.Popen) -> None:
        """Register the process writing the temporary file: discard() kills and reaps it first."""
        self._processes.append(proc)
        track_process(proc)

    def commit(self) -> str:
        """Rename the temporary file onto the final path (replacing any old file) and return it."""
        if self._done:
            raise OutputError(f'{describe(self.final_path)}: output already committed or discarded')
        if not os.path.exists(self.tmp_path):
            self._done = True
            raise OutputError(
                f'{describe(self.final_path)}: the writer removed its temporary file; nothing written'
            )
        # mkstemp creates 0600 files; give the output the permissions a plain open() would.
        with contextlib.suppress(OSError):
            os.chmod(self.tmp_path, 0o666 & ~_current_umask())
        try:
            os.replace(self.tmp_path, self.final_path)
        except OSError as e:
            self.discard()
            raise OutputError(
                f'{describe(self.final_path)}: cannot move finished output into place: {e}'
            ) from e
        self._done = True
        self._finalizer.detach()
        return self.final_path

    def discard(self) -> None:
        """Stop attached writer processes and remove the temporary file; safe to call more than once."""
        self._done = True
        self._finalizer()  # runs _remove_temp once; later calls do nothing
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.tmp_path)


@contextlib.contextmanager
def atomic_write_path(final_path: os.PathLike | str) -> Iterator[str]:
    """Yield a temporary path next to `final_path` with the same extension.

    If the block finishes, the temporary file is renamed onto `final_path`; if it raises (including
    KeyboardInterrupt), the temporary file is removed and `final_path` is left untouched (an older
    file there survives).
    """
    target = AtomicPath(final_path)
    try:
        yield target.tmp_path
    except BaseException:
        target.discard()
        raise
    target.commit()
