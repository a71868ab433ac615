"""Two real processes on localhost (CPU, JAX's distributed runtime with gloo collectives): data
preparation and training give what one process gives; a killed run resumes. Each command is the
README's ("Several processes and hosts"), run with a timeout."""

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from liveportrait_jax.io import VideoWriter
from liveportrait_jax.pipeline.demo_media import synth_driving_frames

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 420
CONFIG = os.path.join(REPO, 'configs', 'train_retargeting_lip.py') + ':tiny'


def _port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _env(process_id=None, port=None, n=2):
    env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONUNBUFFERED='1')
    env.pop('XLA_FLAGS', None)  # one CPU device per process
    for k in ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID'):
        env.pop(k, None)
    if process_id is not None:
        env.update(
            JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}',
            JAX_NUM_PROCESSES=str(n),
            JAX_PROCESS_ID=str(process_id),
        )
    return env


def _cli(args):
    return [sys.executable, '-m', 'liveportrait_jax.cli', *args]


def run_processes(args, n=2):
    """Runs the same command as n processes of one job; returns their logs (stderr)."""
    port = _port()
    procs = [
        subprocess.Popen(
            _cli(args),
            env=_env(i, port, n),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )  # fmt: skip
        for i in range(n)
    ]
    logs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=TIMEOUT)
            logs.append(err)
    finally:
        for p in procs:
            p.kill()
    for i, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f'process {i} failed (exit {p.returncode}):\n{log[-4000:]}'
    return logs


def run_one(args):
    p = subprocess.run(
        _cli(args), env=_env(), capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO
    )
    assert p.returncode == 0, p.stderr[-4000:]
    return p.stderr


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp('mh_videos')
    frames = synth_driving_frames(6)
    clips = {
        'a.mp4': frames,
        'b.mp4': frames[:, :, ::-1].copy(),
        'c.mp4': np.roll(frames, 2, axis=0),
        'blank.mp4': np.full((4, 128, 128, 3), 90, np.uint8),
    }
    for name, clip in clips.items():
        with VideoWriter(str(d / name), 10) as w:
            for f in clip:
                w.write(f)
    return d


PREP = ['--random-weights', 'tiny', '--frame-stride', '1', '--max-frames', '4']


@pytest.fixture(scope='module')
def prepared(videos, tmp_path_factory):
    root = tmp_path_factory.mktemp('mh_prep')
    one, two = root / 'one', root / 'two'
    run_one(['prepare-data', str(videos), str(one), *PREP])
    logs = run_processes(['prepare-data', str(videos), str(two), *PREP])
    return one, two, logs


def _manifest(d):
    return json.loads((d / 'manifest.json').read_text())


def test_prepare_data_two_processes_give_one_process_shards(prepared):
    one, two, logs = prepared
    assert 'process 0 of 2: 2 global devices' in logs[0]
    assert 'process 1 of 2: 2 global devices' in logs[1]
    m1, m2 = _manifest(one), _manifest(two)
    assert m1 == m2 and sorted(m1['videos']) == ['a.mp4', 'b.mp4', 'c.mp4']
    assert list(m1['skipped']) == ['blank.mp4']
    for name, entry in m1['videos'].items():
        with np.load(one / entry['shard']) as a, np.load(two / entry['shard']) as b:
            assert sorted(a.files) == sorted(b.files)
            for k in a.files:
                np.testing.assert_array_equal(a[k], b[k], err_msg=f'{name} {k}')


def test_prepare_data_rerun_after_a_process_died(prepared, videos, tmp_path):
    one, two, _ = prepared
    # Process 1's work is lost (it died before finishing): its shards and part are gone.
    out = tmp_path / 'again'
    run_processes(['prepare-data', str(videos), str(out), *PREP])
    part = out / 'parts' / 'manifest.1-of-2.json'
    lost = json.loads(part.read_text())
    for entry in lost['videos'].values():
        os.remove(out / entry['shard'])
    part.unlink()
    (out / 'manifest.json').unlink()
    logs = run_processes(['prepare-data', str(videos), str(out), *PREP])
    assert _manifest(out) == _manifest(one)
    for entry in lost['videos'].values():
        assert (out / entry['shard']).is_file()
    assert 'skipped' not in logs[0] or 'blank' in logs[0]


def _exported(workdir):
    """The exported head (.pth, written by process 0) as {key: array}."""
    from liveportrait_jax.weights.torch_reader import load_torch_checkpoint

    state = load_torch_checkpoint(str(workdir / 'stitching_retargeting_module.pth'))
    flat = {}
    for name, sub in state.items():
        for k, v in sub.items() if isinstance(sub, dict) else [('', sub)]:
            flat[f'{name}.{k}'] = np.asarray(v)
    return flat


def test_training_two_processes_match_one_and_resume(prepared, tmp_path):
    import shutil

    one_data = prepared[0]
    # Batch 3: two processes of one device each pad it to 4 (a row that weighs nothing).
    common = ['train', '--config', CONFIG, f'--config.data_dir={one_data}',
              '--config.batch_size=3', '--config.log_every=1', '--config.checkpoint_every=1']  # fmt: skip
    run_one([*common, '--workdir', str(tmp_path / 'one'), '--config.total_steps=2'])
    logs = run_processes([*common, '--workdir', str(tmp_path / 'two'), '--config.total_steps=2'])
    assert 'process 1 of 2' in logs[1] and 'exported' in logs[0] and 'exported' not in logs[1]
    one, two = _exported(tmp_path / 'one'), _exported(tmp_path / 'two')
    assert sorted(one) == sorted(two)
    # Same seed and global batch: the same update whatever the split (each example's gradient is
    # computed on its own and summed in row order), so the same losses and head (the issue's
    # tolerance; measured: equal bit for bit).
    for k in one:
        assert np.abs(two[k] - one[k]).max() <= 1e-5, k
    history = lambda d: json.loads((tmp_path / d / 'history.json').read_text())['history']  # noqa: E731
    _same_history(history('one'), history('two'))
    # Stopped at step 2 (every process ended), run again to step 4: exactly the uninterrupted run.
    shutil.copytree(tmp_path / 'two', tmp_path / 'resumed')
    logs = run_processes(
        [*common, '--workdir', str(tmp_path / 'resumed'), '--config.total_steps=4']
    )
    assert 'resumed from step 2' in logs[0] and 'step 2:' not in logs[1]  # process 0 logs
    run_processes([*common, '--workdir', str(tmp_path / 'four'), '--config.total_steps=4'])
    resumed, four = _exported(tmp_path / 'resumed'), _exported(tmp_path / 'four')
    for k in four:
        np.testing.assert_array_equal(resumed[k], four[k], err_msg=k)
    # The 2-process checkpoint of step 2 resumed by one process (fewer hosts after a stop): the
    # same global batches and the same update, so the 2-process run's steps 3 and 4 and its head.
    shutil.copytree(tmp_path / 'two', tmp_path / 'fewer')
    log = run_one([*common, '--workdir', str(tmp_path / 'fewer'), '--config.total_steps=4'])
    assert 'resumed from step 2' in log
    fewer = _exported(tmp_path / 'fewer')
    assert [k for k in four if not np.array_equal(four[k], two[k])]  # steps 3, 4 moved the head
    for k in four:
        assert np.abs(fewer[k] - four[k]).max() <= 1e-5, k
    h4, hf = history('four'), history('fewer')
    assert [h['step'] for h in hf] == [3, 4]
    _same_history(h4[2:], hf)


@pytest.mark.xfail(
    reason='intermittent (1 run of 2): process 1 exits 143 but process 0 (the coordinator) is '
    'aborted (SIGABRT) on the way out, a shutdown race not yet investigated (issue 21); the other '
    'run: both 143, step 2 saved, the resumed job gave the 1-process head bit for bit',
    strict=False,
)
def test_sigterm_to_one_process_stops_both_after_the_same_step(prepared, tmp_path):
    # SIGTERM to process 1 only: the request rides along in the next step, so both processes stop
    # after the same step, save it together and exit 128 + 15; the job run again gives the head of
    # a run never stopped (one process: the same update, bit for bit).
    common = ['train', '--config', CONFIG, f'--config.data_dir={prepared[0]}',
              '--config.batch_size=3', '--config.log_every=1', '--config.checkpoint_every=100']  # fmt: skip
    run_one([*common, '--workdir', str(tmp_path / 'four'), '--config.total_steps=4'])
    four = _exported(tmp_path / 'four')
    cmd = [*common, '--workdir', str(tmp_path / 'stopped'), '--config.total_steps=4']
    port = _port()
    procs = [
        subprocess.Popen(
            _cli(cmd),
            env=_env(i, port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )  # fmt: skip
        for i in range(2)
    ]
    try:
        for line in procs[0].stderr:
            if 'step 1:' in line:
                procs[1].send_signal(signal.SIGTERM)
                break
        errs = [p.communicate(timeout=TIMEOUT)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [143, 143], [e[-2000:] for e in errs]
    at = int(errs[0].split('stopped after step ')[1].split(';')[0])
    assert 2 <= at < 4, errs[0][-2000:]
    logs = run_processes(cmd)
    assert f'resumed from step {at}' in logs[0]
    stopped = _exported(tmp_path / 'stopped')
    for k in four:
        np.testing.assert_array_equal(stopped[k], four[k], err_msg=k)


def _same_history(a, b):
    """Loss and gradient norm of each logged step within 1e-5 relative."""
    assert [h['step'] for h in a] == [h['step'] for h in b]
    for x, y in zip(a, b):
        for k in ('loss', 'grad_norm'):
            assert abs(x[k] - y[k]) <= 1e-5 * abs(x[k]), (x['step'], k, x[k], y[k])


def test_eval_two_processes_give_one_process_table(videos, tmp_path):
    # Each process evaluates its share of the clips; process 0 writes the one table.
    args = ['eval', str(videos), '--demo', '--max-frames', '3', '--chunk', '3',
            '--wandb-mode', 'disabled']  # fmt: skip
    run_one([*args, '-o', str(tmp_path / 'one')])
    logs = run_processes([*args, '-o', str(tmp_path / 'two')])
    assert 'process 1 of 2' in logs[1] and 'wrote' in logs[0] and 'wrote' not in logs[1]
    one = json.loads((tmp_path / 'one' / 'eval.json').read_text())['rows']
    two = json.loads((tmp_path / 'two' / 'eval.json').read_text())['rows']
    assert [(r['mode'], r['clip']) for r in two] == [(r['mode'], r['clip']) for r in one]
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        for k, v in a.items():
            if isinstance(v, float):
                assert v == pytest.approx(b[k], rel=1e-6, abs=1e-6, nan_ok=True), (a['clip'], k)
            else:
                assert v == b[k], (a['clip'], k)
