"""`eval`: metrics against hand-computed values, the identity case, the baseline beside every
result, the command on two synthetic clips (tiny random weights)."""

import json
import math

import numpy as np
import pytest

from liveportrait_jax.evaluation import metrics as M
from liveportrait_jax.evaluation import protocol
from liveportrait_jax.io import VideoWriter
from liveportrait_jax.pipeline.demo_media import synth_driving_frames


def test_image_metrics_by_hand():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[0] = 10  # MSE 100 -> PSNR 10 log10(255^2 / 100)
    b[1, :2] = 255  # half the pixels off by 255 -> L1 0.5
    np.testing.assert_allclose(M.l1(b, a), [10 / 255, 0.5])
    assert M.psnr(b, a)[0] == pytest.approx(10 * math.log10(255**2 / 100))
    assert M.psnr(a, a)[0] == M.PSNR_IDENTICAL
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1, 32, 32, 3), np.uint8)
    assert M.ssim(img, img)[0] == pytest.approx(1.0)
    assert M.ssim(255 - img, img)[0] < 0.0  # inverted: anti-correlated
    with pytest.raises(ValueError, match='shapes differ'):
        M.l1(a, b[:1])


def test_motion_and_landmark_metrics_by_hand():
    ref = np.zeros((1, 478, 2), np.float32)
    ref[0, 33], ref[0, 263] = (0, 0), (10, 0)  # inter-ocular distance 10
    gen = ref + np.array([0.0, 1.0], np.float32)  # every point 1 px off
    assert M.landmark_distance(gen, ref)[0] == pytest.approx(0.1)
    assert M.pose_error(np.array([[1.0, -2.0, 3.0]]), np.zeros((1, 3)))[0] == pytest.approx(2.0)
    exp = np.zeros((1, 21, 3))
    exp[0, :, 0] = 3.0
    exp[0, :, 1] = 4.0  # every keypoint 5 away
    assert M.expression_distance(exp, np.zeros_like(exp))[0] == pytest.approx(5.0)
    assert M.openness_error(np.array([[0.3, 0.1]]), np.array([[0.2, 0.2]]))[0] == pytest.approx(0.1)
    mean, half = M.mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert math.isnan(M.mean_ci([1.0])[1]) and M.mean_ci([2.0, float('nan'), 4.0])[0] == 3.0


def test_identity_gives_zero_error():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 48, 48, 3), np.uint8)
    lms = rng.random((3, 478, 2)).astype(np.float32) * 48
    d = protocol.Described(
        rng.random((3, 3)), rng.random((3, 21, 3)), lms, rng.random((3, 2)), rng.random((3, 1))
    )
    m = protocol._self_metrics(frames, frames.copy(), d, d)
    assert set(m) == set(protocol.SELF_METRICS)
    assert (m['l1'] == 0).all() and np.allclose(m['ssim'], 1.0)
    assert (m['psnr'] == M.PSNR_IDENTICAL).all()
    for k in ('landmarks', 'pose_deg', 'expression', 'eye_open', 'lip_open'):
        assert (m[k] == 0).all(), k


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp('eval_clips')
    f = synth_driving_frames(4)
    for name, clip in (('a.mp4', f), ('b.mp4', f[:, :, ::-1].copy())):
        with VideoWriter(str(d / name), 10) as w:
            for x in clip:
                w.write(x)
    return d


def test_eval_command(clips, tmp_path):
    from liveportrait_jax.cli import main

    out = tmp_path / 'out'
    args = ['eval', str(clips), '-o', str(out), '--demo', '--cross', '--max-frames', '3',
            '--wandb-mode', 'disabled', '--chunk', '3']  # fmt: skip
    assert main(args) == 0
    report = json.loads((out / 'eval.json').read_text())
    assert report['settings']['random_weights'] is True
    rows = report['rows']
    assert [(r['mode'], r['clip'], r['driving']) for r in rows] == [
        ('self', 'a.mp4', 'a.mp4'), ('self', 'b.mp4', 'b.mp4'),
        ('cross', 'a.mp4', 'b.mp4'), ('cross', 'b.mp4', 'a.mp4'),
    ]  # fmt: skip
    for r in rows:  # every metric has its baseline beside it
        names = protocol.SELF_METRICS if r['mode'] == 'self' else protocol.CROSS_METRICS
        for k in names:
            assert k in r and f'{k}_baseline' in r
        assert r['frames'] == 3
    # The baseline of self-reenactment is the first frame repeated: its first frame is exact,
    # and the row holds its mean over the 3 frames (computed here from the clip itself).
    self_a = rows[0]
    real = protocol.read_clip(str(clips / 'a.mp4'), 3)[0]
    first = np.repeat(real[:1], 3, 0)
    l1, ssim = M.l1(first, real), M.ssim(first, real)
    assert l1[0] == 0 and ssim[0] == pytest.approx(1.0) and (l1[1:] > 0).all()
    assert self_a['l1_baseline'] == pytest.approx(l1.mean(), rel=1e-6)
    assert self_a['ssim_baseline'] == pytest.approx(ssim.mean(), rel=1e-6)
    summary = report['summary']
    assert set(summary) == {'self', 'cross'}
    assert set(summary['self']) == set(protocol.SELF_METRICS)
    for s in summary['self'].values():
        assert {'mean', 'ci95', 'baseline_mean', 'baseline_ci95', 'clips'} <= set(s)
        assert s['clips'] == 2 and math.isfinite(s['baseline_mean'])
    header = (out / 'eval.csv').read_text().splitlines()[0].split(',')
    assert header[:4] == ['clip', 'mode', 'driving', 'frames'] and 'psnr_baseline' in header


def test_eval_errors(tmp_path):
    from liveportrait_jax.io import InputError

    with pytest.raises(InputError, match='no videos'):
        protocol.list_clips(str(tmp_path))
    with pytest.raises(InputError, match='folder not found'):
        protocol.list_clips(str(tmp_path / 'nope'))
