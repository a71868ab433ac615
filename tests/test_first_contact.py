"""A new user's first minutes with the command line, run as the user runs it: `liveportrait-jax`
in a subprocess, its exit status, stderr lines and the files it leaves.

Most checks fail before any model runs; the few animations (tiny random weights, --demo) share one
JAX compilation cache and print every progress-bar update, so the bars' counts can be read.
"""

import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from liveportrait_jax.cli import build_parser, main
from liveportrait_jax.io import VideoWriter, probe_video, save_image, save_template
from liveportrait_jax.io.templates import MotionTemplate
from liveportrait_jax.pipeline.demo_media import astronaut, synth_driving_frames
from liveportrait_jax.pipeline.motion_script import load_script

CLI = (sys.executable, '-m', 'liveportrait_jax.cli')
ERROR = 'liveportrait-jax animate: error: '


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    """The working directory of every run: no weights/ folder there (a fresh install)."""
    return tmp_path_factory.mktemp('first_contact')


@pytest.fixture(scope='module')
def cli(root):
    env = dict(os.environ, JAX_PLATFORMS='cpu', JAX_COMPILATION_CACHE_DIR=str(root / '.jax_cache'))
    env.update(
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0',
        TQDM_MININTERVAL='0',  # every bar update printed: the last one shown is the final count
        TQDM_MINITERS='1',
    )

    def run(*args):
        return subprocess.run(
            [*CLI, *map(str, args)], capture_output=True, text=True, timeout=600, env=env, cwd=root
        )

    return run


@pytest.fixture(scope='module')
def inputs(root):
    """A face image, an 8-frame driving video, a 5-frame source video, a 12-frame motion template,
    a motion script, a 1x1 image and a faceless 1200x600 image."""
    d = root / 'inputs'
    d.mkdir()
    face = cv2.resize(astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    save_image(d / 'face.png', face)
    for name, n in (('drive.mp4', 8), ('clip.mp4', 5)):
        with VideoWriter(d / name, 10) as w:
            for frame in synth_driving_frames(n, size=256):
                w.write(frame)
    n, eye = 12, np.eye(3, dtype=np.float32)
    save_template(
        d / 'motion.pkl',
        MotionTemplate(
            R=np.repeat(eye[None], n, 0),
            exp=np.zeros((n, 21, 3), np.float32),
            t=np.zeros((n, 3), np.float32),
            scale=np.ones((n, 1), np.float32),
        ),
    )
    script = {'duration': 0.6, 'fps': 10, 'keyframes': [{'time': 0}, {'time': 0.5, 'yaw': 10}]}
    (d / 'nod.json').write_text(json.dumps(script))
    save_image(d / 'one.png', np.zeros((1, 1, 3), np.uint8))
    save_image(d / 'wall.png', np.full((600, 1200, 3), 128, np.uint8))
    return d


def lines(text):
    return [ln for ln in text.splitlines() if ln.strip()]


# -- 1. own inputs without weights ---------------------------------------------------------------
def test_no_weights_names_both_ways(cli, root, inputs):
    res = cli('animate', '-s', inputs / 'face.png', '-d', inputs / 'drive.mp4', '-o', 'out1')
    assert res.returncode == 2, res.stderr
    (line,) = lines(res.stderr)
    assert line.startswith(ERROR + 'weights: weights directory not found'), line
    assert 'liveportrait-jax convert' in line and '--demo' in line, line
    assert not (root / 'out1').exists()


@pytest.mark.parametrize('missing', ['source', 'script'])
def test_a_missing_input_is_reported_before_the_weights(cli, root, inputs, missing):
    paths = {'source': inputs / 'face.png', 'driving': inputs / 'drive.mp4', 'script': None}
    paths[missing] = f'no_{missing}.mp4' if missing != 'script' else 'no_script.yaml'
    args = ['animate', '-s', paths['source'], '-d', paths['driving'], '-o', 'out2']
    if paths['script']:
        args += ['--motion-script', paths['script']]
    res = cli(*args)
    assert res.returncode == 2
    assert res.stderr == f'{ERROR}{paths[missing]!r}: file not found\n'
    assert not (root / 'out2').exists()


# -- 2. option checks: one rule, one line ---------------------------------------------------------
@pytest.mark.parametrize(
    'args, message',
    [
        (['animate', '--chunk', '0'], 'animate: error: --chunk must be >= 1, got 0'),
        (
            ['animate', '--driving-multiplier', '-1e9'],
            'animate: error: --driving-multiplier must be in [0.0, 10.0], got -1e9',
        ),
    ],
)
def test_a_bad_number_is_one_line(cli, args, message):
    res = cli(*args)
    assert res.returncode == 2
    assert res.stderr == f'liveportrait-jax {message}\n'


@pytest.mark.parametrize(
    'args, message',
    [
        (['animate', '--chunk', '-3'], '--chunk must be >= 1, got -3'),
        (['animate', '--max-frames', '0'], '--max-frames must be >= 1, got 0'),
        (['animate', '--max-template-frames', '-1'], '--max-template-frames must be >= 0, got -1'),
        (['animate', '--workers', '-1e9'], '--workers must be >= 1, got -1e9'),
        (['animate', '--chunk', '2.5'], '--chunk must be an integer, got 2.5'),
        (['animate', '--chunk', 'many'], "--chunk must be a number, got 'many'"),
        (['animate', '--scale', '-1E-3'], '--scale must be in [1.0, 4.0], got -1E-3'),
        (['animate', '--output-fps', 'nan'], '--output-fps must be a number, got nan'),
        (['animate', '--source-max-dim', '-inf'], '--source-max-dim must be >= 0, got -inf'),
        (['animate', '--dsize', '1e9'], '--dsize must be in [64, 2048], got 1e9'),
        (
            ['animate', '--crop-box', '1,2'],
            '--crop-box must be x0,y0,x1,y1 with x1>x0 and y1>y0, got (1.0, 2.0)',
        ),  # fmt: skip
        (['batch', 'm.jsonl', '--chunk', '0'], '--chunk must be >= 1, got 0'),
        (['batch', 'm.jsonl', '--metrics', '-1'], '--metrics must be >= 0, got -1'),
        (['eval', 'videos', '--max-frames', '-1e9'], '--max-frames must be >= 1, got -1e9'),
        (['eval', 'videos', '--vy-ratio', '-2'], '--vy-ratio must be in [-1.0, 1.0], got -2'),
        (['bench', '--chunk', '1,0'], '--chunk must be >= 1, got 0'),
        (['bench', '--rss-frames', '100,-4'], '--rss-frames must be >= 1, got -4'),
        (['bench', '--rss-size', '8'], '--rss-size must be >= 16, got 8'),
        (['bench', '--repeats', '0'], '--repeats must be >= 1, got 0'),
        (['bench', '--host-frames', '0'], '--host-frames must be >= 1, got 0'),
        (['bench', '--frames', '-1'], '--frames must be >= 1, got -1'),
        (['prepare-data', 'v', 'o', '--frame-stride', '0'], '--frame-stride must be >= 1, got 0'),
        (['prepare-data', 'v', 'o', '--max-frames', '0'], '--max-frames must be >= 1, got 0'),
        (['app', '--port', '70000'], '--port must be in [1, 65535], got 70000'),
        (['app', '--chunk', '0'], '--chunk must be >= 1, got 0'),
    ],
)
def test_every_subcommand_checks_its_numbers_alike(capsys, args, message):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    assert capsys.readouterr().err == f'liveportrait-jax {args[0]}: error: {message}\n'


def test_no_numeric_flag_escapes_the_check():
    import argparse

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    checked = 0
    for name, parser in sub.choices.items():
        for action in parser._actions:
            number = isinstance(action.default, (int, float)) and not isinstance(
                action.default, bool
            )
            if action.type in (int, float) or (number and action.nargs != 0):
                assert getattr(action.type, 'checked_number', False), (name, action.dest)
            checked += getattr(action.type, 'checked_number', False)
    assert checked > 50  # the animation options of animate and eval, and every other number


def test_numbers_in_any_spelling():
    args = build_parser().parse_args(
        ['animate', '--chunk', '1e1', '--max-frames', '4.0', '--vx-ratio', '-1e-1',
         '--vy-ratio=-.5', '--driving-multiplier', '2.5E0', '--source-max-dim', '1_000']
    )  # fmt: skip
    assert (args.chunk, args.max_frames, args.source_max_dim) == (10, 4, 1000)
    assert (args.vx_ratio, args.vy_ratio, args.driving_multiplier) == (-0.1, -0.5, 2.5)
    assert build_parser().parse_args(['bench', '--chunk', '1,4e0']).chunk == (1, 4)


# -- 3. frame counts: exact for every kind of input ----------------------------------------------
BAR = re.compile(r'([^\r\n|]+?):\s+\d+%\|[^|\r\n]*\|\s*(\d+)/(\d+)')


def bars(stderr):
    """{description: (last count shown, {totals shown})} of the progress bars in `stderr`."""
    seen = {}
    for desc, n, total in BAR.findall(stderr):
        seen.setdefault(desc.strip(), []).append((int(n), int(total)))
    return {d: (v[-1][0], {t for _, t in v}) for d, v in seen.items()}


RENDER, DRIVING, SOURCE = 'render (W+G, paste-back)', 'motion: driving (faces, M)', 'motion: source (faces, M)'  # fmt: skip


@pytest.mark.parametrize(
    'source, driving, flags, frames, counted',
    [
        # the 0/25 for 24 frames: an image source is not counted as a motion frame
        ('face.png', 'drive.mp4', [], 8, {DRIVING: 8}),
        # --max-frames with a template (it rendered all 12)
        ('face.png', 'motion.pkl', ['--max-frames', '4'], 4, {}),
        ('face.png', 'nod.json', ['--max-frames', '3'], 3, {}),
        # a source video: as many frames as the shorter input, the driving read to its limit
        ('clip.mp4', 'drive.mp4', ['--max-frames', '6'], 5, {DRIVING: 6, SOURCE: 5}),
        ('clip.mp4', 'face.png', [], 5, {SOURCE: 5}),
    ],
    ids=['video', 'template', 'script', 'source-video', 'image'],
)
def test_frame_counts_are_exact(cli, root, inputs, source, driving, flags, frames, counted):
    out = root / f'frames_{driving}'
    args = ['animate', '--demo', '--chunk', '4', '--no-flag-write-concat', '-o', out]
    res = cli(*args, '-s', inputs / source, '-d', inputs / driving, *flags)
    assert res.returncode == 0, res.stderr[-3000:]
    if driving == 'nod.json':  # the script says how many frames it has
        assert load_script(inputs / driving).n_frames > frames
    stem = f'{source.rsplit(".", 1)[0]}--{driving.rsplit(".", 1)[0]}'
    assert probe_video(out / f'{stem}.mp4').n_frames == frames
    assert f'animated {frames} frames' in res.stderr
    shown = bars(res.stderr)
    expected = {RENDER: frames, **counted}
    assert shown == {d: (n, {n}) for d, n in expected.items()}, shown


# -- 4. small errors ------------------------------------------------------------------------------
def test_a_tiny_image_is_named_and_a_folder_that_was_there_stays(cli, root, inputs):
    kept = root / 'kept'
    kept.mkdir()
    res = cli('animate', '--demo', '-s', inputs / 'one.png', '-d', inputs / 'face.png', '-o', kept)
    assert res.returncode == 2
    assert lines(res.stderr)[-1] == (
        f'{ERROR}{str(inputs / "one.png")!r}: image of size 1x1 is too small (sides of at least '
        '2 pixels, --source-division)'
    )
    assert kept.is_dir() and os.listdir(kept) == []


def test_a_failed_run_leaves_no_folder_it_made_and_a_resize_is_said(cli, root, inputs):
    wall = inputs / 'wall.png'
    args = ['animate', '--demo', '-s', wall, '-d', inputs / 'face.png', '--source-max-dim', '400']
    res = cli(*args, '-o', root / 'made' / 'here')
    assert res.returncode == 2
    said = [ln for ln in lines(res.stderr) if 'resized' in ln]
    assert said == [f'{wall}: source 1200x600 resized to 400x200 (--source-max-dim 400)']
    assert lines(res.stderr)[-1] == f'{ERROR}no face found in {str(wall)!r}'
    assert not (root / 'made').exists()


# -- 5. the README's test command says how long and what the browser test needs -------------------
def test_readme_says_the_test_time_and_chromium():
    readme = open(os.path.join(os.path.dirname(__file__), '..', 'README.md')).read()
    setup = readme.split('## Set-up', 1)[1].split('```', 2)[1]
    before = setup.split("pip install -e '.[test]' && python -m pytest", 1)[0]
    comment = before.rsplit('# 2.', 1)[1]
    assert re.search(r'about \d+ minutes', comment), comment
    assert 'apt-get install -y chromium' in comment and 'skipped' in comment, comment
