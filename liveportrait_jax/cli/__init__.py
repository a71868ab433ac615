"""The `liveportrait-jax` command line: one module per subcommand, each a thin driver over the
library with `add_parser(subparsers)` and `run(args)`.

However a command ends it leaves no partial output, temporary file or child process: outputs are
written atomically (liveportrait_jax.io.atomic), and while a command runs SIGTERM and SIGHUP (what
`timeout`, `docker stop`, job schedulers and a closed terminal send) are turned into the same
unwinding as Ctrl-C, so every cleanup handler runs. Exit status: 2 for bad input, 128 + the signal
number when interrupted (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP).
"""

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
import warnings

# Subcommand -> module of this package. Modules are imported when the parser is built; each keeps
# its heavy imports (JAX, OpenCV, Gradio) inside `run`, so `--help` is quick.
SUBCOMMANDS = {
    'animate': 'animate',
    'convert': 'convert',
    'bench': 'bench',
    'app': 'app',
    'train': 'train',
    'prepare-data': 'prepare_data',
    'batch': 'batch',
    'eval': 'eval',
}

# Signals that end a command cleanly (besides SIGINT, which Python raises as KeyboardInterrupt).
TERMINATING_SIGNALS = tuple(
    getattr(signal, name) for name in ('SIGTERM', 'SIGHUP') if hasattr(signal, name)
)


class Terminated(BaseException):
    """Raised in the main thread when a terminating signal arrives, so that the command unwinds like
    on Ctrl-C: every `finally` and `except BaseException` cleanup runs. A BaseException, like
    KeyboardInterrupt, so that `except Exception` handlers do not swallow it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f'signal {self.signum}'

    def __str__(self) -> str:
        return f'terminated by {self.signal_name}'


@contextlib.contextmanager
def signals_raise_terminated():
    """While the block runs, SIGTERM and SIGHUP raise Terminated in the main thread.

    Only signals whose disposition is the default (terminate at once) are taken over: an ignored
    SIGHUP (nohup) stays ignored. A second signal while the first one unwinds is ignored, so that
    cleanup is not itself interrupted; a third one ends the process at once (in case cleanup hangs).
    The previous handlers are restored afterwards. Outside the main thread (where Python cannot
    install handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def handler(signum, frame):
        received.append(signum)
        if len(received) == 1:
            raise Terminated(signum)
        if len(received) >= 3:  # asked three times: give up on cleanup
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        # the second one: already unwinding, let the cleanup finish

    previous = {}
    try:
        for sig in TERMINATING_SIGNALS:
            with contextlib.suppress(OSError, ValueError):
                if signal.getsignal(sig) == signal.SIG_DFL:
                    previous[sig] = signal.signal(sig, handler)
        yield
    finally:
        for sig, old in previous.items():
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, old)


def _log_warning(message, category, filename, lineno, file=None, line=None):
    """warnings.showwarning for the CLI: one visible log line per warning, without the source
    location and code line that Python's default format adds (they mean nothing to a user)."""
    if file is not None:  # an explicit destination: the standard format there
        with contextlib.suppress(OSError, ValueError):
            file.write(warnings.formatwarning(message, category, filename, lineno, line))
        return
    logging.getLogger('py.warnings').warning('warning: %s', message)


def setup_logging():
    """Our progress lines at INFO; libraries' chatter (JAX backend probing, orbax narrating every
    checkpoint, absl) at WARNING. Python warnings (e.g. a damaged driving video) go to the log as
    one 'warning: ...' line each."""
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    for name in ('absl', 'orbax', 'jax', 'jax._src.xla_bridge'):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    warnings.showwarning = _log_warning


def _path_in_the_way(path: str) -> str | None:
    """The path, or its nearest ancestor, that exists but is not a directory (None if there is none)."""
    while path:
        if os.path.lexists(path):
            return None if os.path.isdir(path) else path
        parent = os.path.dirname(path.rstrip(os.sep) or path)
        if parent == path:
            return None
        path = parent
    return None


def describe_os_error(e: OSError) -> str:
    """One line naming the path and the problem of a file-system error (no errno, no traceback)."""
    if e.filename is None or isinstance(e.filename, int):
        return str(e)
    path = os.fsdecode(e.filename)
    if isinstance(e, (FileExistsError, NotADirectoryError)):
        blocker = _path_in_the_way(path)
        if blocker is not None:
            needed = '' if blocker == path else f', but a directory is needed there for {path!r}'
            return f'{blocker!r}: exists and is not a directory{needed}'
        if isinstance(e, FileExistsError):
            return f'{path!r}: already exists'
    problem = {
        PermissionError: 'permission denied',
        IsADirectoryError: 'is a directory, expected a file',
        NotADirectoryError: 'a part of the path is not a directory',
        FileExistsError: 'already exists',
    }.get(type(e), e.strerror or type(e).__name__)
    if e.filename2 is not None and not isinstance(e.filename2, int):
        return f'{path!r} -> {os.fsdecode(e.filename2)!r}: {problem}'
    return f'{path!r}: {problem}'


def build_parser():
    parser = argparse.ArgumentParser(
        prog='liveportrait-jax', description='LivePortrait portrait animation in JAX / Flax NNX.'
    )
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    for module in SUBCOMMANDS.values():
        importlib.import_module(f'{__name__}.{module}').add_parser(sub)
    return parser


MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def _cap_malloc_arenas() -> None:
    """glibc gives every thread that allocates its own malloc arena, and freed frame buffers stay
    in them: with the decoder, landmark and encoder threads a long video's RSS crept up (1.44 GB
    after 18,000 frames against 1.01 GB after 300). Two arenas (MALLOC_ARENA_MAX=2) kept an
    8,000-frame run at 0.93 GB. Linux/glibc only; elsewhere, or if the environment already sets
    MALLOC_ARENA_MAX, nothing is changed."""
    if not sys.platform.startswith('linux') or 'MALLOC_ARENA_MAX' in os.environ:
        return
    try:
        import ctypes

        ctypes.CDLL('libc.so.6').mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    except (OSError, AttributeError):
        pass


def _quiesce_device() -> None:
    """Waits for device computations still running (dispatched ahead of an interrupted loop):
    XLA's threads must not outlive the interpreter's shutdown, or the process crashes at exit."""
    jax = sys.modules.get('jax')
    if jax is None:
        return
    try:
        for array in jax.live_arrays():
            array.block_until_ready()
    except Exception:
        pass


def _interrupted(command: str, signal_name: str, status: int) -> int:
    _quiesce_device()
    print(
        f'liveportrait-jax {command}: interrupted ({signal_name}); no partial output was kept',
        file=sys.stderr,
    )
    return status


def main(argv=None):
    from liveportrait_jax.io.errors import OutputError

    parser = build_parser()
    # Only `train` takes extra arguments: its --config.KEY=VALUE overrides (ml_collections).
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, 'accepts_config_overrides', False):
        parser.error(f'unrecognized arguments: {" ".join(extra)}')
    args.config_overrides = extra
    setup_logging()
    _cap_malloc_arenas()
    try:
        with signals_raise_terminated():
            return args.func(args)
    except (FileNotFoundError, ValueError, OutputError) as e:
        # CheckpointError, InputError, NoFaceError and option errors are ValueErrors: one clear
        # line naming the file and the problem instead of a traceback.
        print(f'liveportrait-jax {args.command}: error: {e}', file=sys.stderr)
        return 2
    except (FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError) as e:
        # e.g. -o naming an existing file: the path and the problem, not os.makedirs' traceback.
        print(f'liveportrait-jax {args.command}: error: {describe_os_error(e)}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted(args.command, 'SIGINT', 128 + signal.SIGINT)
    except Terminated as e:
        return _interrupted(args.command, e.signal_name, 128 + e.signum)


if __name__ == '__main__':
    sys.exit(main())
