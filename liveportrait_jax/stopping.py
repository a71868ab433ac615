"""Stop requests (SIGINT, SIGTERM, SIGHUP, or a caller's `request()`): recorded, then acted on at safe
points, so that none is ever lost.

A signal handler that raises is unreliable: Python runs it at whatever bytecode the main thread is
executing, and inside a garbage-collector callback (jaxlib's `_xla_gc_callback`), a `__del__` or a
weakref finaliser the exception is printed as 'Exception ignored in ...' and dropped, and the run
goes on. So the handlers here only record the request; the work calls `check()` where stopping is
safe (between chunks, files, steps) and `Stopped` is raised there, and worker threads watch `event`.

Blocking calls see no flag (a JAX compile, a long device call, a pipe write to ffmpeg), and a
Python handler does not even run while the main thread is inside one. Signals are therefore also
delivered, from C, through a wake-up pipe to a watchdog thread: it records the request at once and,
if no safe point has raised `Stopped` within GRACE_S seconds (not counting `critical()` sections),
ends the process itself: it runs the registered emergency cleanups (io.atomic kills the encoder and
decoder processes and removes the temporary outputs), prints the one 'stopped' line and calls
os._exit(128 + signal). When a safe point raised, the unwinding has until UNWIND_S after the
request. The third signal ends the process at once (after the same cleanup), whatever it does.

Typical use: the CLI wraps a command in `stop_on_signals(label)`; long loops call `check()`;
threads poll `event.is_set()` or use `event.wait(timeout)`; a checkpoint save runs inside
`with critical():` so that a second signal cannot cut it short.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from typing import Callable, Iterator, Optional

# Signals taken over by stop_on_signals (those that exist on this platform).
SIGNALS = tuple(
    getattr(signal, name) for name in ('SIGINT', 'SIGTERM', 'SIGHUP') if hasattr(signal, name)
)
# Seconds from a request (or the end of the last critical() section) until the watchdog ends the
# process: when no safe point has raised Stopped, and when one has but the unwinding still runs.
# Together they keep every exit under 2 s, well inside a scheduler's grace period.
GRACE_S = 1.2
UNWIND_S = 1.5

# Set when a stop is requested; worker threads poll it or wait on it.
event = threading.Event()

_signum: Optional[int] = None  # the first request's signal; plain assignments, no locks (handlers)
_raised = False  # a safe point has raised Stopped: the unwinding is under way
_critical = 0  # open critical() sections, all threads
_critical_left = 0.0  # monotonic time the last critical() section ended
_critical_lock = threading.Lock()
_local = threading.local()  # this thread's critical() depth: check() defers inside one
_cleanups: list[Callable[[], None]] = []
_label = 'liveportrait-jax'
_announced = False
_exit_lock = threading.Lock()


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f'signal {signum}'


class Stopped(BaseException):
    """Raised at a safe point after a stop request. A BaseException, like KeyboardInterrupt, so that
    `except Exception` handlers do not swallow it; every `finally` cleanup runs."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        return signal_name(self.signum)

    @property
    def exit_status(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        return f'stopped by {self.signal_name}'


def requested() -> Optional[int]:
    """The signal number of the first stop request, or None."""
    return _signum


def request(signum: int = signal.SIGTERM) -> None:
    """Record a stop request (as a signal does; for tests, the app, ComfyUI's Cancel). Safe to call
    from any thread; the first request's signal is kept. Starts no watchdog: only signals do, so
    the caller's safe points alone end the work and the process goes on."""
    global _signum
    if _signum is None:
        _signum = signum
    event.set()


def check() -> None:
    """A safe point: raises Stopped if a stop was requested (except inside this thread's critical()
    sections, which finish first)."""
    global _raised
    signum = _signum
    if signum is not None and not getattr(_local, 'depth', 0):
        _raised = True
        raise Stopped(signum)


def wait(seconds: float) -> None:
    """Sleep up to `seconds`, waking (and raising Stopped) on a stop request."""
    event.wait(seconds)
    check()


def reset() -> None:
    """Forget any request (tests, long-lived apps between calls)."""
    global _signum, _raised, _announced
    _signum = None
    _raised = False
    _announced = False
    event.clear()


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """A section that a stop must not cut short (a checkpoint save): check() in this thread does not
    raise and the watchdog waits until it ends. Only a third signal still ends the process."""
    global _critical, _critical_left
    _local.depth = getattr(_local, 'depth', 0) + 1
    with _critical_lock:
        _critical += 1
    try:
        yield
    finally:
        with _critical_lock:
            _critical -= 1
            _critical_left = time.monotonic()
        _local.depth -= 1


def add_emergency_cleanup(fn: Callable[[], None]) -> None:
    """Register `fn` to run (from the watchdog thread, must not block long) before a forced exit."""
    if fn not in _cleanups:
        _cleanups.append(fn)


def announce(signum: int, *, newline: bool = False) -> None:
    """Print the one 'stopped' line (once per request) to stderr; `newline` starts it on a line of
    its own (a forced exit cuts in wherever the output is, e.g. a progress bar's line)."""
    global _announced
    if _announced:
        return
    _announced = True
    line = f'{_label}: stopped by {signal_name(signum)}; no partial output was kept\n'
    line = '\n' + line if newline else line
    # os.write, not print: the main thread may hold sys.stderr's lock when the watchdog calls this.
    with contextlib.suppress(OSError):
        os.write(2, line.encode())


def exit_now(signum: int, *, forced: bool = False) -> None:
    """End the process now: the emergency cleanups, the 'stopped' line, os._exit(128 + signum).
    `forced`: cut in without the unwinding (the watchdog, a third signal)."""
    _exit_lock.acquire()  # the main thread and the watchdog at once: the second waits for the end
    for fn in list(_cleanups):
        with contextlib.suppress(BaseException):
            fn()
    announce(signum, newline=forced)
    os._exit(128 + signum)


def _handler(signum, frame):
    # Record only: raising here could land in a gc callback and be dropped. Not even event.set():
    # it takes the Event's lock, which the interrupted main thread may hold (inside event.wait);
    # the watchdog, woken by the same signal, sets the event.
    global _signum
    if _signum is None:
        _signum = signum


def _watch(read_fd: int, ours: set) -> None:
    """The watchdog: reads signal numbers from the wake-up pipe (written from C, even while the main
    thread is stuck in a long call) and ends the process when nothing else does."""
    count, first = 0, None
    while True:
        timeout = None if first is None else 0.05
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select([read_fd], [], [], timeout)
            if readable:
                data = os.read(read_fd, 64)
                if not data or 0 in data:  # closed, or the stop_on_signals block ended
                    return
                for signum in data:
                    if signum in ours:
                        request(signum)
                        count += 1
                        first = first or time.monotonic()
                        if count >= 3:  # asked three times: give up on cleanup
                            exit_now(_signum or signum, forced=True)
        if first is None or _critical:
            continue
        now = time.monotonic()
        limit = UNWIND_S if _raised else GRACE_S
        if now - max(first, _critical_left) >= limit:
            exit_now(_signum or signal.SIGTERM, forced=True)


@contextlib.contextmanager
def stop_on_signals(label: str = 'liveportrait-jax') -> Iterator[None]:
    """While the block runs, SIGINT, SIGTERM and SIGHUP record a stop request (see the module doc).

    `label` starts the 'stopped' line. Signals the process ignores (SIGHUP under nohup) stay
    ignored, as do handlers someone else installed; previous handlers are restored afterwards.
    Outside the main thread (where Python cannot install handlers) this does nothing.
    """
    global _label
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ours = set()
    previous = {}
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # a full pipe must never block the C-level signal handler
    old_wakeup = None
    watchdog = None
    old_label, _label = _label, label
    try:
        for sig in SIGNALS:
            with contextlib.suppress(OSError, ValueError):
                if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
                    previous[sig] = signal.signal(sig, _handler)
                    ours.add(int(sig))
        old_wakeup = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        watchdog = threading.Thread(
            target=_watch, args=(read_fd, ours), name='stop-watchdog', daemon=True
        )
        watchdog.start()
        yield
    finally:
        if old_wakeup is not None:
            with contextlib.suppress(OSError, ValueError):
                signal.set_wakeup_fd(old_wakeup)
        for sig, old in previous.items():
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, old)
        if watchdog is not None:
            with contextlib.suppress(OSError):
                os.write(write_fd, b'\0')
            watchdog.join(1.0)
        for fd in (read_fd, write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        _label = old_label
