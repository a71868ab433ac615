"""Would the test suite notice if `animate` / `animate_frames` silently dropped an option?

For each field of AnimateOptions that changes pixels, runs the option tests in a fresh pytest
whose pipeline (`liveportrait_jax.pipeline.animation.run`, the one place both entry points hand
their options to) sees that field at its default, and reports the first test that failed: a field
no test catches is NOT GUARDED (exit status 1).

    python tools/option_guard.py                       # every field
    python tools/option_guard.py flag_stitching dsize  # some

Each field first runs the tests named after it (`-k FIELD`), then, if they all pass, the option
test files in order, stopping at the first failure. This file is also the pytest plugin that does
the dropping (`-p option_guard` with LPJ_DROP_OPTION=FIELD).
"""

import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEST_FILES = (
    'tests/test_e2e_reference.py',
    'tests/test_option_paths.py',
    'tests/test_steady.py',
    'tests/test_faces_multi.py',
)
# Fields that change no pixel of the animation: where the audio comes from, the frame rate when
# no input has one, which extra files are written; and driving_option, whose expression-friendly
# rescaling is by the ratio of x_s's hull to the first driving frame's, which relative motion
# makes x_s itself (the reference's two choices give the same keypoints; see test_option_paths).
NO_PIXELS = (
    'audio_priority',
    'output_fps',
    'flag_write_gif',
    'flag_write_concat',
    'driving_option',
)
ENV = 'LPJ_DROP_OPTION'


def pytest_configure(config):
    """Plugin: the pipeline's `run` sees options with the field named in LPJ_DROP_OPTION at its
    default."""
    field = os.environ.get(ENV)
    if not field:
        return
    from liveportrait_jax.pipeline import animation
    from liveportrait_jax.pipeline.options import SCHEMA

    real, default = animation.run, SCHEMA[field].default

    def run(models, source, driving, options, *args, **kwargs):
        return real(models, source, driving, options.replace(**{field: default}), *args, **kwargs)

    animation.run = run


def _pytest(field, args):
    env = dict(os.environ, **{ENV: field})
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(ROOT / 'tools'), env.get('PYTHONPATH')]))
    cmd = [
        sys.executable,
        '-m',
        'pytest',
        '-p',
        'option_guard',
        '-x',
        '-q',
        '-p',
        'no:cacheprovider',
    ]
    res = subprocess.run(cmd + args, cwd=ROOT, env=env, capture_output=True, text=True)
    failed = [
        ln.split(' ')[1] for ln in res.stdout.splitlines() if ln.startswith(('FAILED', 'ERROR'))
    ]
    return res.returncode, failed


def check(field):
    """(guarded, first failing test or None)."""
    code, failed = _pytest(field, ['tests/test_option_paths.py', '-k', field])
    if code == 1 and failed:
        return True, failed[0]
    code, failed = _pytest(field, list(TEST_FILES))
    return code == 1 and bool(failed), (failed or [None])[0]


def main(argv):
    sys.path.insert(0, str(ROOT))
    from liveportrait_jax.pipeline.options import SCHEMA

    fields = argv or [f for f in SCHEMA if f not in NO_PIXELS]
    rows, bad = [], 0
    for field in fields:
        t0 = time.time()
        guarded, test = check(field)
        bad += not guarded
        rows.append(
            dict(field=field, guarded=guarded, caught_by=test, seconds=round(time.time() - t0))
        )
        print(f'{field:42s} {"guarded" if guarded else "NOT GUARDED":12s} {test or ""}', flush=True)
    print(json.dumps(rows))
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
