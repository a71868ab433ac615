"""Exceptions raised by the input/output layer.

Callers (CLI, web UI, notebooks) catch these to show a one-line message instead of a traceback from
deep inside OpenCV or ffmpeg, so every message names the file and says what is wrong with it.
"""

from __future__ import annotations

import os


class InputError(ValueError):
    """A user-supplied file is missing, unreadable, or not what it claims to be."""


class UnsafePickleError(InputError):
    """A pickle asked for a global outside the allow-list; it was refused before anything ran."""


class OutputError(RuntimeError):
    """Writing an output failed (encoder crash, bad frame, nothing written); no partial file is left."""


def describe(path: os.PathLike | str) -> str:
    """Quote a path the same way in every message."""
    return repr(os.fspath(path))


def check_input_file(path: os.PathLike | str, kind: str) -> str:
    """Fail early, with the file's name, when `path` is not an existing non-empty regular file."""
    name = describe(path)
    p = os.fspath(path)
    if not os.path.exists(p):
        raise InputError(f'{name}: {kind} file not found')
    if os.path.isdir(p):
        raise InputError(f'{name}: is a directory, expected a {kind} file')
    if os.path.getsize(p) == 0:
        raise InputError(f'{name}: {kind} file is empty')
    if not os.access(p, os.R_OK):
        raise InputError(f'{name}: {kind} file is not readable (permission denied)')
    return p
