"""Write-to-temp-then-rename, so a crash or bad input never leaves a half-written output behind.

The temporary file lives in the destination directory (os.replace is only atomic within one file
system) and keeps the destination's extension, because encoders such as ffmpeg and cv2.imencode
choose the container/format from the file name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator

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


class AtomicPath:
    """A reserved temporary sibling of `final_path`; call commit() to publish it or discard() to drop it.

    Used directly by writers whose lifetime spans several calls (VideoWriter); one-shot writers use
    the atomic_write_path context manager below.
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
        os.close(fd)
        self.final_path = final
        self.tmp_path = tmp
        self._done = False

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
        return self.final_path

    def discard(self) -> None:
        """Remove the temporary file; safe to call more than once."""
        self._done = True
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
