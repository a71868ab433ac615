"""Batch runs: many animate jobs from a manifest, resumable and split across hosts.

A manifest is JSON lines, one job per line (blank lines and lines starting with # are skipped):

    {"source": "faces/a.jpg", "driving": "clips/d0.mp4"}
    {"source": "faces/b.jpg", "driving": "clips/d1.mp4", "options": {"flag_stitching": false},
     "output": "b-nostitch", "id": "b-ns"}

source / driving: paths (relative ones are relative to the manifest's folder); driving may be a
list (one per face, with options.faces). options: AnimateOptions fields by name (the CLI flags'
names without dashes), checked for every job before any job runs. output: the job's folder name
under the output directory (default: its id, else `<index>-<source>--<driving>`); two jobs may not
share one.

Each job runs `animate` into its folder with one model set loaded once (chunks sharded over the
local devices, as animate does). A job that finished leaves `job.json` in its folder (written last,
atomically, listing its outputs); a job is skipped when that file and every output it lists exist,
so a rerun redoes only unfinished jobs (an interrupted job leaves no final output: animate writes
to temporary files and renames them). A failing job (missing file, no face, ...) is recorded with its
error and the others run. Shards: job k belongs to shard k % N; each shard appends one line per job
to its own `results.shard-I-of-N.jsonl` (status done / skipped / failed, error, seconds, frames,
frames/s, outputs, and with `--metrics N` the job's cross-reenactment metrics beside their no-motion
baselines, `evaluation.protocol.job_metrics`).
"""

import dataclasses
import json
import logging
import os
import time
from typing import Optional

from liveportrait_jax import stopping
from liveportrait_jax.io import atomic_write_path
from liveportrait_jax.pipeline.options import options_from_values
from liveportrait_jax.pipeline.outputs import stem

log = logging.getLogger('liveportrait_jax')

JOB_KEYS = ('source', 'driving', 'options', 'output', 'id')
DONE = 'job.json'


class ManifestError(ValueError):
    """A manifest that cannot be run; the message names the file and line."""


@dataclasses.dataclass
class Job:
    index: int  # position among the manifest's jobs (0-based), which decides its shard
    line: int  # line number in the manifest (1-based)
    source: str
    driving: object  # a path, or a list of paths (one per face)
    options: object  # AnimateOptions
    output: str  # folder name under the output directory
    id: Optional[str] = None


def _resolve(base, path, where):
    if not isinstance(path, str) or not path:
        raise ManifestError(f'{where}: expected a path, got {path!r}')
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def read_manifest(path):
    """The jobs of a JSON-lines manifest, every line checked (ManifestError naming the line)."""
    path = os.fspath(path)
    try:
        with open(path, encoding='utf-8') as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ManifestError(f'{path!r}: cannot read the manifest ({e.strerror or e})') from None
    base = os.path.dirname(os.path.abspath(path))
    jobs, outputs = [], {}
    for n, text in enumerate(lines, 1):
        text = text.strip()
        if not text or text.startswith('#'):
            continue
        where = f'{path!r}, line {n}'
        try:
            entry = json.loads(text)
        except ValueError as e:
            raise ManifestError(f'{where}: not JSON ({e})') from None
        if not isinstance(entry, dict):
            raise ManifestError(f'{where}: a job is a JSON object with source and driving')
        unknown = sorted(set(entry) - set(JOB_KEYS))
        if unknown:
            raise ManifestError(f'{where}: unknown key(s) {unknown}; a job has {list(JOB_KEYS)}')
        for key in ('source', 'driving'):
            if key not in entry:
                raise ManifestError(f'{where}: {key} is missing')
        source = _resolve(base, entry['source'], where)
        drv = entry['driving']
        if isinstance(drv, list):
            driving = [_resolve(base, d, where) for d in drv]
            if not driving:
                raise ManifestError(f'{where}: driving is an empty list')
        else:
            driving = _resolve(base, drv, where)
        values = entry.get('options') or {}
        if not isinstance(values, dict):
            raise ManifestError(f'{where}: options must be an object of option names and values')
        try:
            options = options_from_values({}, **values)
        except (TypeError, ValueError) as e:
            raise ManifestError(f'{where}: {e}') from None
        index = len(jobs)
        job_id = None if entry.get('id') is None else str(entry['id'])
        first = driving[0] if isinstance(driving, list) else driving
        output = entry.get('output') or job_id or f'{index:05d}-{stem(source)}--{stem(first)}'
        if not isinstance(output, str) or os.sep in output or output in ('.', '..'):
            raise ManifestError(f'{where}: output must be a folder name, got {output!r}')
        if output in outputs:
            raise ManifestError(
                f'{where}: output {output!r} is also the output of line {outputs[output]}'
            )
        outputs[output] = n
        jobs.append(Job(index, n, source, driving, options, output, job_id))
    if not jobs:
        raise ManifestError(f'{path!r}: no jobs in the manifest')
    return jobs


def parse_shard(text):
    """'I/N' -> (I, N) with 0 <= I < N."""
    try:
        i, n = (int(v) for v in text.split('/'))
    except (ValueError, AttributeError):
        raise ValueError(f'--shard takes I/N (e.g. 0/2), got {text!r}') from None
    if not 0 <= i < n:
        raise ValueError(f'--shard {text}: I must be in 0..N-1')
    return i, n


def shard_from_environment():
    """(I, N) from a scheduler's array job (SLURM_ARRAY_TASK_ID / _COUNT, offset by _MIN), else
    None."""
    task, count = os.environ.get('SLURM_ARRAY_TASK_ID'), os.environ.get('SLURM_ARRAY_TASK_COUNT')
    if task is None or count is None:
        return None
    return int(task) - int(os.environ.get('SLURM_ARRAY_TASK_MIN', 0)), int(count)


def job_done(job_dir):
    """The finished job's record, or None (not run, or interrupted, or an output is missing)."""
    path = os.path.join(job_dir, DONE)
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    outputs = [p for p in record.get('outputs', {}).values() if p]
    if not outputs or not all(os.path.exists(p) for p in outputs):
        return None
    return record


def run_job(models, job, job_dir, *, chunk, progress=False, metrics=None):
    """Runs one job (animate into job_dir); returns its record (also written as job.json), with
    metrics(job) (a dict, e.g. `eval`'s numbers) when given."""
    from liveportrait_jax.pipeline.animation import animate

    t = time.perf_counter()
    res = animate(models, job.source, job.driving, job_dir, job.options, chunk=chunk,
                  progress=progress)  # fmt: skip
    wall = time.perf_counter() - t
    record = {
        'frames': res.n_frames,
        'wall_s': round(wall, 3),
        'frames_per_s': round(res.n_frames / wall, 3) if wall > 0 else None,
        'outputs': {
            'output': res.output, 'concat': res.concat, 'gif': res.gif, 'template': res.template,
        },
    }  # fmt: skip
    if metrics is not None:
        record['metrics'] = metrics(job)
    with atomic_write_path(os.path.join(job_dir, DONE)) as tmp:
        with open(tmp, 'w') as f:
            json.dump(record, f, indent=1)
    return record


def run_batch(models, jobs, output_dir, *, shard=(0, 1), chunk=8, progress=True, say=log.info,
              metrics=None):  # fmt: skip
    """Runs this shard's jobs; returns the summary {done, skipped, failed, jobs, wall_s,
    results}. Exceptions other than a job's own errors (Ctrl-C, SIGTERM) stop the batch.
    metrics(job) -> dict: measured after each job that runs, kept in its record (the CLI's
    --metrics N: evaluation.protocol.job_metrics)."""
    i, n = shard
    mine = [j for j in jobs if j.index % n == i]
    os.makedirs(output_dir, exist_ok=True)
    results_path = os.path.join(output_dir, f'results.shard-{i}-of-{n}.jsonl')
    counts = {'done': 0, 'skipped': 0, 'failed': 0}
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(mine), desc=f'batch shard {i}/{n}', unit='job')
    with open(results_path, 'a', encoding='utf-8') as results:
        for job in mine:
            stopping.check()  # between jobs: finished jobs stay, a rerun does the rest
            job_dir = os.path.join(output_dir, job.output)
            row = {
                'index': job.index, 'line': job.line, 'id': job.id, 'source': job.source,
                'driving': job.driving, 'output_dir': job_dir, 'shard': f'{i}/{n}',
            }  # fmt: skip
            record = job_done(job_dir)
            if record is not None:
                row.update(status='skipped', **record)
            else:
                try:
                    record = run_job(models, job, job_dir, chunk=chunk, metrics=metrics)
                    row.update(status='done', **record)
                except Exception as e:  # noqa: BLE001  one job's failure is recorded, not fatal
                    row.update(status='failed', error=f'{type(e).__name__}: {e}')
            counts[row['status']] += 1
            say(f'job {job.index} (line {job.line}) {row["status"]}: {job.output}'
                + (f': {row["error"]}' if 'error' in row else ''))  # fmt: skip
            results.write(json.dumps(row) + '\n')
            results.flush()
            if bar is not None:
                bar.update(1)
        summary = dict(counts, jobs=len(mine), shard=f'{i}/{n}')
        summary['wall_s'] = round(time.perf_counter() - t0, 3)
        results.write(json.dumps({'summary': summary}) + '\n')
    if bar is not None:
        bar.close()
    summary['results'] = results_path
    return summary
