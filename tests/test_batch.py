"""`batch`: a manifest of animate jobs, resumable and shardable (tiny random weights)."""

import json
import os

import pytest

from liveportrait_jax.io import VideoWriter, save_image
from liveportrait_jax.pipeline.batch import (
    ManifestError,
    job_done,
    parse_shard,
    read_manifest,
    run_batch,
)
from liveportrait_jax.pipeline.demo_media import astronaut, synth_driving_frames

QUIET = dict(progress=False, chunk=4, say=lambda *a: None)
FAST = {'flag_write_concat': False}


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp('batch_in')
    save_image(str(d / 'face.png'), astronaut())
    with VideoWriter(str(d / 'clip.mp4'), 8) as w:
        for f in synth_driving_frames(3):
            w.write(f)
    return d


def write_manifest(path, jobs, extra=''):
    path.write_text('# jobs\n' + '\n'.join(json.dumps(j) for j in jobs) + '\n' + extra)
    return path


def jobs_for(n):
    return [
        {'source': 'face.png', 'driving': 'clip.mp4', 'options': FAST, 'output': f'job{k}'}
        for k in range(n)
    ]


def _results(out, shard):
    lines = (out / f'results.shard-{shard}.jsonl').read_text().splitlines()
    return [json.loads(x) for x in lines]


def test_two_shards_cover_the_manifest_once_and_rerun_skips(models, inputs, tmp_path):
    manifest = write_manifest(inputs / 'm4.jsonl', jobs_for(4))
    jobs = read_manifest(manifest)
    out = tmp_path / 'out'
    a = run_batch(models, jobs, str(out), shard=(0, 2), **QUIET)
    b = run_batch(models, jobs, str(out), shard=(1, 2), **QUIET)
    assert (a['done'], b['done'], a['failed'] + b['failed']) == (2, 2, 0)
    done = [r['index'] for s in ('0-of-2', '1-of-2') for r in _results(out, s) if 'index' in r]
    assert sorted(done) == [0, 1, 2, 3]  # every job once, in exactly one shard
    for k in range(4):
        record = job_done(str(out / f'job{k}'))
        assert record and os.path.isfile(record['outputs']['output']) and record['frames'] == 3
    stamps = {k: os.path.getmtime(out / f'job{k}' / 'job.json') for k in range(4)}
    again = run_batch(models, jobs, str(out), shard=(0, 1), **QUIET)
    assert (again['skipped'], again['done']) == (4, 0)  # nothing redone
    assert stamps == {k: os.path.getmtime(out / f'job{k}' / 'job.json') for k in range(4)}
    # A half-finished job (its output gone, as if it was interrupted) is redone, and only it.
    os.remove(job_done(str(out / 'job2'))['outputs']['output'])
    third = run_batch(models, jobs, str(out), shard=(0, 1), **QUIET)
    assert (third['done'], third['skipped']) == (1, 3)
    last_run = [(r['index'], r['status']) for r in _results(out, '0-of-1')[-5:-1]]
    assert last_run == [(0, 'skipped'), (1, 'skipped'), (2, 'done'), (3, 'skipped')]
    assert job_done(str(out / 'job2'))  # its output is back


def test_a_failing_job_is_recorded_and_the_rest_finish(models, inputs, tmp_path):
    jobs = jobs_for(3)
    jobs[1] = dict(jobs[1], source='missing.png')
    out = tmp_path / 'out'
    summary = run_batch(models, read_manifest(write_manifest(tmp_path / 'm.jsonl', [
        dict(j, source=str(inputs / j['source']), driving=str(inputs / j['driving']))
        for j in jobs
    ])), str(out), **QUIET)  # fmt: skip
    assert (summary['done'], summary['failed']) == (2, 1)
    rows = _results(out, '0-of-1')
    failed = [r for r in rows if r.get('status') == 'failed']
    assert len(failed) == 1 and 'missing.png' in failed[0]['error'] and failed[0]['line'] == 3
    assert rows[-1]['summary']['failed'] == 1


def test_manifest_errors(inputs, tmp_path):
    def check(jobs, message, extra=''):
        with pytest.raises(ManifestError, match=message):
            read_manifest(write_manifest(tmp_path / 'bad.jsonl', jobs, extra))

    check([{'source': 'a.png'}], 'line 2: driving is missing')
    check([{'source': 'a', 'driving': 'b', 'speed': 2}], 'unknown key')
    check([{'source': 'a', 'driving': 'b', 'options': {'scale': 9}}], r'line 2: scale must be')
    check([{'source': 'a', 'driving': 'b', 'options': {'nope': 1}}], 'line 2: .*nope')
    check(jobs_for(1) + [dict(jobs_for(1)[0])], "line 3: output 'job0' is also .* line 2")
    check(jobs_for(1), 'line 3: not JSON', extra='{oops\n')
    check([], 'no jobs')
    assert parse_shard('1/3') == (1, 3)
    for bad in ('3/3', 'a/b', '1'):
        with pytest.raises(ValueError, match='--shard'):
            parse_shard(bad)


def test_cli(inputs, tmp_path):
    from liveportrait_jax.cli import main

    manifest = write_manifest(inputs / 'm2.jsonl', jobs_for(2))
    out = tmp_path / 'cli'
    args = ['batch', str(manifest), '-o', str(out), '--demo', '--quiet', '--chunk', '4']
    assert main(args + ['--shard', '1/2']) == 0
    assert job_done(str(out / 'job1')) and not job_done(str(out / 'job0'))
    assert main(args + ['--metrics', '3']) == 0  # job1 skipped, job0 done and measured
    rows = _results(out, '0-of-1')
    assert [r.get('status') for r in rows[:2]] == ['done', 'skipped']
    metrics = rows[0]['metrics']
    for k in ('pose_deg', 'expression', 'eye_open', 'lip_open'):
        assert k in metrics and f'{k}_baseline' in metrics
