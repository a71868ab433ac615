"""Each command once, as a user runs it: the installed `liveportrait-jax` script in its own process.

The success path of every subcommand (the error cases are tests/test_first_contact.py's): the exit
code, a stderr without a traceback, and the files left behind (each output readable, with the
frames it should have; no hidden '.<name>.*.partial.<ext>' temp file anywhere). The weights are the
tiny fixtures converted by `convert` (laid out as the released folder), or the tiny random demo;
the media are scikit-image's astronaut and chelsea and the clip the project makes from the
astronaut (pipeline/demo_media.py). A JAX compilation cache shared by these processes (in the
test's temporary folder) saves recompiling what an earlier one compiled: the file's 12 processes
take about 260 s of CPU in all (animate 14-20 s each, train 33-37 s, bench 31 s; `pytest -s` prints
each one's).
"""

import json
import os
import pathlib
import resource
import subprocess
import sys

import numpy as np
import pytest
from conftest import released_layout

from liveportrait_jax.io import (
    VideoWriter,
    load_image,
    load_template,
    load_video_frames,
    probe_video,
    save_image,
)
from liveportrait_jax.pipeline.demo_media import astronaut, synth_driving_frames

SCRIPT = pathlib.Path(sys.executable).parent / 'liveportrait-jax'
REPO = pathlib.Path(__file__).resolve().parent.parent
DRIVING_FRAMES = 6  # the driving clip; --max-frames 4 keeps 4 of them
# The astronaut's face: roughly x 150..330, y 40..230 of the 512x512 image (demo_media).
FACE = (slice(40, 230), slice(150, 330))
HEAD_KEYS = {'stitching': 'retarget_shoulder', 'eye': 'retarget_eye', 'lip': 'retarget_mouth'}


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    return tmp_path_factory.mktemp('commands')


@pytest.fixture(scope='module')
def cli(root):
    """cli(*args): runs the installed script; asserts exit code 0 and no traceback; the result."""
    assert SCRIPT.is_file(), f'{SCRIPT}: the console script is not installed (pip install -e .)'
    env = dict(os.environ, JAX_PLATFORMS='cpu', JAX_COMPILATION_CACHE_DIR=str(root / 'jax_cache'))
    env.update(
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0',
    )

    def run(*args, cwd=None):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        res = subprocess.run(
            [str(SCRIPT), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            cwd=cwd or root,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        print(f'liveportrait-jax {args[0]}: {cpu:.1f} s CPU')  # shown by pytest -s
        assert res.returncode == 0, f'{args[0]}: exit {res.returncode}\n{res.stderr[-3000:]}'
        assert 'Traceback' not in res.stderr, res.stderr[-3000:]
        return res

    return run


def no_partials(folder):
    """No hidden temp file of an atomic write was left anywhere under `folder`."""
    left = [p for p in pathlib.Path(folder).rglob('.*') if '.partial' in p.name]
    assert not left, left


def frames_of(path, n, size=None):
    """The video's frames, checked: n of them, each (size, size) when given."""
    frames = np.stack(load_video_frames(path))
    assert len(frames) == n == probe_video(path).n_frames, (path, len(frames))
    if size is not None:
        assert frames.shape[1:3] == (size, size), frames.shape
    return frames


@pytest.fixture(scope='module')
def media(root):
    d = root / 'media'
    d.mkdir()
    save_image(str(d / 'astronaut.png'), astronaut())
    clip = synth_driving_frames(DRIVING_FRAMES)
    with VideoWriter(str(d / 'driving.mp4'), 8) as w:
        for f in clip:
            w.write(f)
    save_image(str(d / 'driving_image.png'), clip[1])
    # A source video: the astronaut panning slowly, 3 frames of 384x384.
    with VideoWriter(str(d / 'panning.mp4'), 8) as w:
        for k in range(3):
            w.write(np.ascontiguousarray(astronaut()[10 + 4 * k : 394 + 4 * k, 48:432]))
    from skimage import data

    save_image(str(d / 'chelsea.png'), data.chelsea())
    return d


@pytest.fixture(scope='module')
def weights(cli, root):
    """`convert` of the tiny fixtures laid out as the released pretrained_weights/ folder."""
    src = released_layout(root / 'pretrained_weights')
    dst = root / 'weights'
    res = cli('convert', src, dst)
    assert 'human: ' in res.stdout and 'config tiny' in res.stdout, res.stdout
    return dst


def test_convert(weights):
    human = weights / 'human'
    assert human.is_dir() and sorted(p.name for p in weights.iterdir()) == ['human']
    no_partials(weights)
    import liveportrait_jax as lp

    models = lp.load_models(weights)
    assert models.config.name == 'tiny' and not models.random_weights


@pytest.fixture(scope='module')
def animated(cli, weights, media, root):
    """Image source, video driving (--max-frames 4 of its 6 frames)."""
    out = root / 'anim_image_video'
    res = cli('animate', '-s', media / 'astronaut.png', '-d', media / 'driving.mp4', '-o', out,
              '--weights', weights, '--chunk', '4', '--max-frames', '4', '--quiet')  # fmt: skip
    return out, res


def test_animate_image_source_video_driving(animated):
    out, res = animated
    assert 'RANDOM' not in res.stderr  # converted weights: no demo label
    assert sorted(p.name for p in out.iterdir()) == [
        'astronaut--driving.mp4',
        'astronaut--driving_concat.mp4',
        'driving.pkl',
    ]
    frames = frames_of(out / 'astronaut--driving.mp4', 4, size=512)
    src = astronaut()
    for f in frames:  # the face is animated; the rest of the photo is pasted back
        assert np.abs(f[FACE].astype(np.int16) - src[FACE]).mean() > 3
    assert len(load_template(out / 'driving.pkl').R) == 4
    frames_of(out / 'astronaut--driving_concat.mp4', 4)
    no_partials(out)


def test_animate_video_source_template_driving(cli, weights, media, animated, root):
    out = root / 'anim_video_pkl'
    cli('animate', '-s', media / 'panning.mp4', '-d', animated[0] / 'driving.pkl', '-o', out,
        '--weights', weights, '--chunk', '4', '--quiet')  # fmt: skip
    # A video source animates as many frames as it has (3) of the template's 4.
    assert sorted(p.name for p in out.iterdir()) == [
        'panning--driving.mp4',
        'panning--driving_concat.mp4',
    ]
    frames = frames_of(out / 'panning--driving.mp4', 3, size=384)
    source = np.stack(load_video_frames(media / 'panning.mp4'))
    assert np.abs(frames.astype(np.int16) - source).mean() > 1
    no_partials(out)


def test_animate_image_driving_gives_a_still(cli, weights, media, root):
    out = root / 'anim_image_image'
    cli('animate', '-s', media / 'astronaut.png', '-d', media / 'driving_image.png', '-o', out,
        '--weights', weights, '--quiet')  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [
        'astronaut--driving_image.jpg',
        'astronaut--driving_image_concat.jpg',
        'driving_image.pkl',
    ]
    assert len(load_template(out / 'driving_image.pkl').R) == 1
    still = load_image(out / 'astronaut--driving_image.jpg')
    src = astronaut()
    assert still.shape == src.shape
    diff = np.abs(still.astype(np.int16) - src)
    assert diff[FACE].mean() > 3 and diff[440:].mean() < 3  # the face changed, not the rest
    no_partials(out)


def test_animate_animals(cli, media, animated, root):
    """--animals on chelsea: OpenCV's cat cascade finds the face; random animal weights."""
    out = root / 'anim_cat'
    res = cli('animate', '--animals', '--demo', '-s', media / 'chelsea.png', '-d',
              animated[0] / 'driving.pkl', '-o', out, '--chunk', '4', '--flag-write-gif',
              '--quiet')  # fmt: skip
    assert 'RANDOM WEIGHTS' in res.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ['chelsea--driving.gif', 'chelsea--driving.mp4', 'chelsea--driving_concat.mp4']
    # The animal mode's outputs are in the crop's space (no paste-back), as the reference's.
    frames = frames_of(out / 'chelsea--driving.mp4', 4, size=512)
    assert frames.std(axis=0).mean() > 1  # the driving's 4 poses: the frames differ
    import imageio.v3 as iio

    assert iio.imread(out / 'chelsea--driving.gif', index=None).shape[0] == 4
    no_partials(out)


def test_batch(cli, weights, media, root):
    d = root / 'batch'
    d.mkdir()
    jobs = [{'source': str(media / 'astronaut.png'), 'driving': str(media / 'driving.mp4'),
             'options': {'flag_write_concat': False}, 'output': 'job0'}]  # fmt: skip
    (d / 'jobs.jsonl').write_text(''.join(json.dumps(j) + '\n' for j in jobs))
    out = d / 'out'
    cli('batch', d / 'jobs.jsonl', '-o', out, '--weights', weights, '--chunk', '4', '--quiet')
    lines = (out / 'results.shard-0-of-1.jsonl').read_text().splitlines()
    record, summary = map(json.loads, lines)
    assert record['status'] == 'done' and record['frames'] == DRIVING_FRAMES, record
    assert summary['summary']['done'] == 1 and summary['summary']['failed'] == 0, summary
    assert sorted(p.name for p in (out / 'job0').iterdir() if p.suffix == '.mp4') == [
        'astronaut--driving.mp4'
    ]
    frames_of(out / 'job0' / 'astronaut--driving.mp4', DRIVING_FRAMES, size=512)
    no_partials(out)


def test_eval(cli, weights, media, root):
    clips = root / 'eval_clips'
    clips.mkdir()
    os.symlink(media / 'driving.mp4', clips / 'a.mp4')
    out = root / 'eval_out'
    cli('eval', clips, '-o', out, '--weights', weights, '--max-frames', '3', '--chunk', '3',
        '--wandb-mode', 'disabled')  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ['eval.csv', 'eval.json']
    report = json.loads((out / 'eval.json').read_text())
    (row,) = report['rows']
    assert (row['clip'], row['mode'], row['frames']) == ('a.mp4', 'self', 3)
    assert report['settings']['random_weights'] is False
    assert all(np.isfinite(row[k]) for k in ('l1', 'l1_baseline', 'psnr', 'ssim'))
    lines = (out / 'eval.csv').read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith('a.mp4,self,a.mp4,3')
    no_partials(out)


def test_bench(cli, root):
    out = root / 'bench.json'
    cli('bench', '--config', 'tiny', '--chunk', '2', '--frames', '2', '--repeats', '1',
        '--sections', 'device', '--json', out)  # fmt: skip
    data = json.loads(out.read_text())
    stages = data['stages_ms_per_frame']['chunk 2']
    assert all(stages[k] > 0 for k in ('M (motion extractor)', 'W (warping)', 'G (generator)'))
    no_partials(root)


@pytest.fixture(scope='module')
def prepared(cli, media, root):
    videos = root / 'train_videos'
    videos.mkdir()
    frames = synth_driving_frames(4)
    for name, clip in (('a.mp4', frames), ('b.mp4', frames[:, :, ::-1].copy())):
        with VideoWriter(str(videos / name), 10) as w:
            for f in clip:
                w.write(f)
    out = root / 'prepared'
    cli('prepare-data', videos, out, '--random-weights', 'tiny', '--frame-stride', '1',
        '--max-frames', '3')  # fmt: skip
    return out


def test_prepare_data(prepared):
    manifest = json.loads((prepared / 'manifest.json').read_text())
    assert sorted(manifest['videos']) == ['a.mp4', 'b.mp4'] and manifest['total_frames'] == 6
    assert sorted(p.name for p in (prepared / 'shards').iterdir()) == ['a.npz', 'b.npz']
    with np.load(prepared / 'shards' / 'a.npz') as z:
        assert z['crops'].shape == (3, 256, 256, 3)
    no_partials(prepared)


@pytest.fixture(scope='module')
def trained(cli, prepared, root):
    """`train` of each head for 2 steps on the prepared data: {head: its exported state dict}."""
    from liveportrait_jax.weights.torch_reader import load_torch_checkpoint

    names = {'stitching': 'stitching', 'eye': 'retargeting_eye', 'lip': 'retargeting_lip'}
    exported = {}
    for head, name in names.items():
        workdir = root / f'train_{head}'
        cli('train', '--config', REPO / 'configs' / f'train_{name}.py:tiny', '--workdir', workdir,
            '--config.total_steps=2', '--config.batch_size=2', '--config.log_every=1',
            f'--config.data_dir={prepared}')  # fmt: skip
        history = json.loads((workdir / 'history.json').read_text())['history']
        assert len(history) == 2 and all(np.isfinite(h['loss']) for h in history), history
        no_partials(workdir)
        exported[head] = load_torch_checkpoint(workdir / 'stitching_retargeting_module.pth')
    return exported


@pytest.mark.parametrize('head', ['stitching', 'eye', 'lip'])
def test_train_each_head(trained, head):
    """The exported file holds the three heads; the trained one moved, the other two did not."""
    mine = trained[head]
    for other, sd in trained.items():
        if other == head:
            continue
        for h, key in HEAD_KEYS.items():
            same = all(np.array_equal(mine[key][k], sd[key][k]) for k in mine[key])
            assert same == (h not in (head, other)), (head, other, key)
