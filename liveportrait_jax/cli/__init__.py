"""The `liveportrait-jax` command line: one module per subcommand, each a thin driver over the
library with `add_parser(subparsers)` and `run(args)`.

However a command ends it leaves no partial output, temporary file or child process: outputs are
written atomically (liveportrait_jax.io.atomic), and while a command runs SIGINT (Ctrl-C), SIGTERM
and SIGHUP (what `timeout`, `docker stop`, job schedulers and a closed terminal send) are stop
requests (liveportrait_jax.stopping): recorded, raised as Stopped at the next safe point so every
cleanup handler runs, and the process is gone within 2 s. Exit status: 2 for bad input, 128 + the
signal number when stopped (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP).
"""

import argparse
import contextlib
import importlib
import logging
import os
import re
import signal
import sys
import warnings

from liveportrait_jax import stopping

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

# Stop requests live in liveportrait_jax.stopping (recorded, acted on at safe points); the old
# names stay for code that imported them.
Terminated = stopping.Stopped
signals_raise_terminated = stopping.stop_on_signals


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


class Parser(argparse.ArgumentParser):
    """argparse with the command line's rules for what the user typed: a bad argument is one line,
    `PROG: error: MESSAGE`, without the usage dump (--help has it); a negative number in any
    spelling (-1e9, -.5, -inf) is a value, not an unknown option."""

    NEGATIVE_NUMBER = re.compile(r'^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-(inf|infinity|nan)$', re.I)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # argparse's own pattern (-5, -.5) takes -1e9 for an option ("expected one argument").
        self._negative_number_matcher = self.NEGATIVE_NUMBER

    def error(self, message):
        # "argument --chunk: --chunk must be >= 1, got 0": the flag is named once.
        m = re.match(r'argument (\S+): (.*)', message, re.S)
        if m and any(m.group(2).startswith(o + ' ') for o in m.group(1).split('/')):
            message = m.group(2)
        self.exit(2, f'{self.prog}: error: {message}\n')


def build_parser():
    parser = Parser(
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


def _stopped(signum: int) -> int:
    """The end of a command stopped by a signal: the one 'stopped' line, then os._exit(128 +
    signum) after the cleanup the interpreter's exit would do (encoders and decoders killed,
    temporary files removed). Skipping the interpreter's shutdown is what keeps the exit under 2 s:
    tearing down JAX and the loaded modules took 1-1.5 s, and device work dispatched ahead (seconds
    of it on a CPU) had to be waited for, or XLA's threads outliving Python crash the exit; the
    two made SIGTERM in the render take 4-4.6 s. Does not return."""
    tqdm = sys.modules.get('tqdm')
    for bar in list(getattr(getattr(tqdm, 'tqdm', None), '_instances', ())):
        with contextlib.suppress(Exception):
            bar.close()  # a bar the stopped loop left open: the 'stopped' line gets its own line
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    stopping.exit_now(signum)
    return 128 + signum  # not reached


def main(argv=None):
    from liveportrait_jax.io.errors import OutputError

    parser = build_parser()
    # Only `train` takes extra arguments: its --config.KEY=VALUE overrides (ml_collections).
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, 'accepts_config_overrides', False):
        Parser(prog=f'{parser.prog} {args.command}').error(
            f'unrecognized arguments: {" ".join(extra)}'
        )
    args.config_overrides = extra
    setup_logging()
    _cap_malloc_arenas()
    stopping.reset()
    try:
        with stopping.stop_on_signals(f'liveportrait-jax {args.command}'):
            try:
                status = args.func(args)
                stopping.check()  # a request during the last steps: still a quick 128 + signal
                return status
            except BaseException as e:
                # Whatever a stop request made fail (a killed encoder's broken pipe included), the
                # command was stopped: one 'stopped' line and 128 + signal, not an error report.
                signum = e.signum if isinstance(e, stopping.Stopped) else stopping.requested()
                if signum is None and isinstance(e, KeyboardInterrupt):
                    signum = signal.SIGINT  # SIGINT handled by someone else's handler
                if signum is None:
                    raise
                return _stopped(int(signum))
    except (FileNotFoundError, ValueError, OutputError) as e:
        # CheckpointError, InputError, NoFaceError and option errors are ValueErrors: one clear
        # line naming the file and the problem instead of a traceback.
        print(f'liveportrait-jax {args.command}: error: {e}', file=sys.stderr)
        return 2
    except (FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError) as e:
        # e.g. -o naming an existing file: the path and the problem, not os.makedirs' traceback.
        print(f'liveportrait-jax {args.command}: error: {describe_os_error(e)}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
