"""However the command line ends, it leaves no partial output, temporary file or child process, and
says what happened in one line; bad paths and damaged inputs are reported, not tracebacks.

The signal tests run the CLI in a subprocess and send it SIGTERM (what `timeout`, `docker stop` and
job schedulers send) or SIGINT (Ctrl-C) while it is writing: once through a stand-in subcommand that
only writes videos (independent of the models), once through `animate --demo` end to end.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from liveportrait_jax.io import VideoWriter

try:
    import psutil
except ImportError:  # the /proc fallback below
    psutil = None

# Like the console script, plus SIGINT restored to raise KeyboardInterrupt: a child started from a
# non-interactive shell may inherit SIGINT ignored, which a terminal's Ctrl-C would not be.
LAUNCH = (
    'import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); '
    'signal.signal(signal.SIGTERM, signal.SIG_DFL); '
    'from liveportrait_jax.cli import main; sys.exit(main(sys.argv[1:]))'
)

# A stand-in subcommand registered in-process, so that these tests do not depend on the models:
# `standin OUTDIR [MODE]`. MODE 'write' (default) keeps two VideoWriters in `with` blocks, one
# leaked writer that nothing ever closes (the interpreter-exit safety net must remove it) and one
# pending atomic file; 'slow-cleanup' also takes a second to clean up; 'read' decodes the video
# OUTDIR and prints its frame count.
STANDIN = textwrap.dedent(
    """
    import os, signal, sys, time, types
    import numpy as np
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import liveportrait_jax.cli as cli
    from liveportrait_jax.io import VideoWriter, atomic_write_path, load_video_frames

    def add_parser(sub):
        p = sub.add_parser('standin', help='writes videos until stopped')
        p.add_argument('outdir')
        p.add_argument('mode', nargs='?', default='write')
        p.set_defaults(func=run)

    def run(args):
        out = args.outdir
        if args.mode == 'read':
            print(len(load_video_frames(out)))
            return 0
        frame = np.zeros((64, 64, 3), np.uint8)
        global LEAKED
        LEAKED = VideoWriter(os.path.join(out, 'leaked.mp4'), 25)
        LEAKED.write(frame)
        with (
            VideoWriter(os.path.join(out, 'a.mp4'), 25) as a,
            VideoWriter(os.path.join(out, 'b.mp4'), 25) as b,
            atomic_write_path(os.path.join(out, 'c.txt')) as c,
        ):
            with open(c, 'w') as f:
                f.write('half')
            try:
                while True:
                    cli.stopping.check()  # a safe point, as the real commands have
                    a.write(frame)
                    b.write(frame)
                    time.sleep(0.005)
            finally:
                if args.mode == 'slow-cleanup':
                    print('cleaning', file=sys.stderr, flush=True)
                    time.sleep(1.0)

    module = types.ModuleType('liveportrait_jax.cli._standin')
    module.add_parser = add_parser
    sys.modules[module.__name__] = module
    cli.SUBCOMMANDS = {'standin': '_standin'}
    sys.exit(cli.main(['standin', *sys.argv[1:]]))
    """
)

SIGNALS = [(signal.SIGTERM, 'SIGTERM', 143), (signal.SIGINT, 'SIGINT', 130)]
ALL_SIGNALS = SIGNALS + ([(signal.SIGHUP, 'SIGHUP', 129)] if hasattr(signal, 'SIGHUP') else [])


# -- child processes ---------------------------------------------------------------------------
def _descendants(pid):
    """Processes below `pid`, as handles that stay valid (and are compared) after it exits."""
    if psutil is not None:
        try:
            return psutil.Process(pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
    parents = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat:
                parents.setdefault(int(stat[1]), []).append((int(entry), stat[19]))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def _proc_stat(pid):
    """(state, ppid, ...) fields of /proc/<pid>/stat after the command name, or None."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()
    except (OSError, IndexError):
        return None


def _alive(handle):
    """Still running (a zombie that nobody reaped has exited, so it does not count)."""
    if psutil is not None:
        try:
            return handle.is_running() and handle.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
    pid, start = handle
    stat = _proc_stat(pid)
    return stat is not None and stat[19] == start and stat[0] != 'Z'


def _name(handle):
    try:
        if psutil is not None:
            return ' '.join(handle.cmdline()[:3])
        with open(f'/proc/{handle[0]}/cmdline', 'rb') as f:
            return ' '.join(a.decode(errors='replace') for a in f.read().split(b'\0')[:3])
    except Exception:  # gone already, or not readable
        return None


def _leftovers(folder):
    """Temporary or partial files anywhere under `folder` (hidden names, '.partial.' in them)."""
    bad = []
    for root, _, files in os.walk(folder):
        bad += [os.path.join(root, f) for f in files if f.startswith('.') or 'partial' in f.lower()]
    return bad


def _record(seen, pid):
    """Adds the descendants of `pid` to `seen`: {key: (handle, command line)}."""
    for child in _descendants(pid):
        key = child if psutil is None else child.pid
        # Refreshed while it runs: a fork shows its parent's command line until it execs.
        name = _name(child) or (seen[key][1] if key in seen else '?')
        seen[key] = (child, name)


def _interrupt_when(cmd, out, ready, sig, *, start_timeout=60, env=None):
    """Run `cmd`, wait until `ready(out, seen)`, send `sig`; returns (rc, stderr, descendants seen as
    (handle, command line) pairs)."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=out.parent
    )
    seen = {}
    try:
        deadline = time.monotonic() + start_timeout
        while not ready(out, seen):
            _record(seen, proc.pid)
            if proc.poll() is not None:
                _, err = proc.communicate()
                pytest.fail(
                    f'the command ended (exit {proc.returncode}) before it was interrupted; '
                    f'stderr:\n{err[-3000:]}'
                )
            if time.monotonic() > deadline:
                pytest.fail(f'nothing to interrupt after {start_timeout} s: {os.listdir(out)}')
            time.sleep(0.05)
        _record(seen, proc.pid)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err, list(seen.values())


def _check_clean_exit(rc, err, children, out, command, sig_name, status):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == status, err[-3000:]
    assert 'Traceback' not in err, err[-3000:]
    assert lines and lines[-1] == (
        f'liveportrait-jax {command}: stopped by {sig_name}; no partial output was kept'
    ), err[-3000:]
    assert _leftovers(out) == []
    # No grace period: the command kills and reaps its children before it exits itself.
    left = [name for child, name in children if _alive(child)]
    assert left == [], f'child processes left running: {left}'


def _has_partial_mp4(folder, seen=None):
    return any('.partial.' in f and f.endswith('.mp4') for f in os.listdir(folder))


# -- signals, through a stand-in subcommand ------------------------------------------------------
@pytest.mark.parametrize('sig, sig_name, status', ALL_SIGNALS, ids=[s[1] for s in ALL_SIGNALS])
def test_signal_while_writing_leaves_nothing(tmp_path, sig, sig_name, status):
    out = tmp_path / 'out'
    out.mkdir()
    # Ready once all three encoders run (a.mp4, b.mp4 and the leaked one) and c.txt is pending.
    rc, err, children = _interrupt_when(
        [sys.executable, '-c', STANDIN, str(out)],
        out,
        # All four temp files exist and the three encoders run (not just forked).
        lambda d, seen: (
            len([f for f in os.listdir(d) if '.partial.' in f]) >= 4
            and sum('ffmpeg' in name for _, name in seen.values()) >= 3
        ),
        sig,
    )
    assert sum('ffmpeg' in name for _, name in children) >= 3, children
    _check_clean_exit(rc, err, children, out, 'standin', sig_name, status)
    assert os.listdir(out) == []


def test_second_sigterm_does_not_interrupt_cleanup(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, '-c', STANDIN, str(out), 'slow-cleanup'], stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while len([f for f in os.listdir(out) if '.partial.' in f]) < 4:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.stderr.readline().strip() == 'cleaning'
        proc.send_signal(signal.SIGTERM)  # while cleaning up: ignored
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 143, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert 'Traceback' not in err, err
    assert os.listdir(out) == []


# -- signals, end to end -------------------------------------------------------------------------
@pytest.fixture(scope='module')
def demo_inputs(tmp_path_factory):
    """The astronaut and a 32-frame synthetic driving clip: a demo run long enough to interrupt."""
    from liveportrait_jax.io import save_image
    from liveportrait_jax.pipeline.demo_media import astronaut, synth_driving_frames

    d = tmp_path_factory.mktemp('inputs')
    src, drv = d / 'src.png', d / 'drv.mp4'
    save_image(src, astronaut())
    with VideoWriter(drv, 12) as w:
        for frame in synth_driving_frames(n_frames=32, size=256):
            w.write(frame)
    return src, drv


@pytest.mark.parametrize('sig, sig_name, status', SIGNALS, ids=[s[1] for s in SIGNALS])
def test_signal_during_animate_leaves_nothing(tmp_path, demo_inputs, sig, sig_name, status):
    src, drv = demo_inputs
    out = tmp_path / 'out'
    out.mkdir()
    cmd = [sys.executable, '-c', LAUNCH, 'animate', '--demo', '--quiet', '--chunk', '4']
    cmd += ['-s', str(src), '-d', str(drv), '-o', str(out)]
    rc, err, children = _interrupt_when(cmd, out, _has_partial_mp4, sig, start_timeout=90)
    _check_clean_exit(rc, err, children, out, 'animate', sig_name, status)
    # Whatever is left was finished before the signal (e.g. the motion template), never a video
    # cut short: every video there decodes completely.
    from liveportrait_jax.io import load_video_frames, probe_video

    for name in os.listdir(out):
        if name.endswith('.mp4'):
            assert len(load_video_frames(out / name)) == probe_video(out / name).n_frames


# -- bad output paths ----------------------------------------------------------------------------
def test_output_dir_that_is_a_file_is_a_one_line_error(tmp_path, demo_inputs, capsys):
    from liveportrait_jax.cli import main

    src, drv = demo_inputs
    taken = tmp_path / 'taken'
    taken.write_text('not a directory')
    rc = main(['animate', '--demo', '--quiet', '-s', str(src), '-d', str(drv), '-o', str(taken)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert 'Traceback' not in err
    assert lines[-1].startswith('liveportrait-jax animate: error: ')
    assert repr(str(taken)) in lines[-1] and 'not a directory' in lines[-1]
    assert taken.read_text() == 'not a directory'


@pytest.mark.parametrize(
    'error, expected',
    [
        (FileExistsError(17, 'File exists', '{file}'), "'{file}': exists and is not a directory"),
        (
            NotADirectoryError(20, 'Not a directory', '{file}/sub'),
            "'{file}': exists and is not a directory, but a directory is needed there for "
            "'{file}/sub'",
        ),
        (
            PermissionError(13, 'Permission denied', '{dir}/x.mp4'),
            "'{dir}/x.mp4': permission denied",
        ),
        (
            IsADirectoryError(21, 'Is a directory', '{dir}'),
            "'{dir}': is a directory, expected a file",
        ),
    ],
)
def test_os_errors_are_one_line_with_exit_2(tmp_path, monkeypatch, capsys, error, expected):
    import types

    import liveportrait_jax.cli as cli

    file = tmp_path / 'file'
    file.write_text('x')
    error.filename = error.filename.format(file=file, dir=tmp_path)

    def run(args):
        raise error

    module = types.ModuleType('liveportrait_jax.cli._raises')
    module.add_parser = lambda sub: sub.add_parser('raises', help='raises').set_defaults(func=run)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(cli, 'SUBCOMMANDS', {'raises': '_raises'})
    assert cli.main(['raises']) == 2
    err = capsys.readouterr().err
    assert err == f'liveportrait-jax raises: error: {expected.format(file=file, dir=tmp_path)}\n'


# -- warnings reach the log ----------------------------------------------------------------------
def test_damaged_video_warning_is_one_log_line(tmp_path):
    path = tmp_path / 'cut.mp4'
    rng = np.random.default_rng(0)
    with VideoWriter(path, 25) as w:
        for _ in range(100):
            w.write(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    res = subprocess.run(
        [sys.executable, '-c', STANDIN, str(path), 'read'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    n = int(res.stdout)
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(
        f'warning: {str(path)!r}: decoded only {n} of 100 frames; the file is damaged or truncated'
    )
