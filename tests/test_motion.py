"""The vectorised keypoint composition against the per-frame transcription of the reference."""

import itertools

import numpy as np
import pytest
from reference_motion import reference_keypoints

import liveportrait_jax as lp
from liveportrait_jax.pipeline.compose import compose_keypoints
from liveportrait_jax.pipeline.motion import kalman_smooth, source_video_targets
from liveportrait_jax.pipeline.options import AnimateOptions

N = 5


def _motion(rng, n):
    angles = rng.uniform(-20, 20, size=(n, 3)).astype(np.float32)
    R = np.asarray(lp.get_rotation_matrix(angles[:, 0], angles[:, 1], angles[:, 2]))
    return {
        'kp': rng.normal(size=(n, 21, 3)).astype(np.float32) * 0.3,
        'R': R,
        'exp': rng.normal(size=(n, 21, 3)).astype(np.float32) * 0.02,
        'scale': rng.uniform(1.2, 1.8, size=(n, 1)).astype(np.float32),
        't': rng.normal(size=(n, 3)).astype(np.float32) * 0.05,
    }


def _case(models, options, *, src_video, drv_video, seed=0):
    rng = np.random.default_rng(seed)
    src = _motion(rng, N if src_video else 1)
    drv = _motion(rng, N)
    if not drv_video:  # a driving image: its one row repeated, as the pipeline passes it
        drv = {k: np.repeat(v[:1], N, axis=0) for k, v in drv.items()}
    x_s = np.asarray(lp.transform_keypoints(src, rotation=src['R']))
    lip_array = rng.normal(size=(21, 3)).astype(np.float32) * 0.02
    s = N if src_video else 1
    ratios = dict(
        src_eye=rng.uniform(0.1, 0.4, (s, 2)).astype(np.float32),
        src_lip=rng.uniform(0.0, 0.3, (s, 1)).astype(np.float32),
        drv_eye=rng.uniform(0.1, 0.4, (N, 2)).astype(np.float32),
        drv_lip=rng.uniform(0.0, 0.3, (N, 1)).astype(np.float32),
    )
    got = compose_keypoints(
        models,
        src,
        drv,
        x_s,
        options,
        source_is_video=src_video,
        driving_is_video=drv_video,
        lip_array=lip_array,
        **ratios,
    )
    smooth = {'exp': None, 'R': None}
    if src_video:
        smooth = source_video_targets(
            src,
            drv,
            relative=options.flag_relative_motion,
            pose=options.animation_region in ('all', 'pose'),
            driving_is_video=drv_video,
            lip_array=lip_array,
            observation_variance=options.driving_smooth_observation_variance,
        )

    def s_fn(fn):
        return lambda a, b: np.asarray(fn(a[None], np.asarray(b, np.float32)[None]))[0]

    want = reference_keypoints(
        src,
        drv,
        x_s,
        options,
        src_video=src_video,
        drv_video=drv_video,
        lip_array=lip_array,
        smooth_exp=smooth['exp'],
        smooth_R=smooth['R'],
        stitch=s_fn(models.stitching),
        eye=s_fn(models.retarget_eye),
        lip=s_fn(models.retarget_lip),
        c_s_eyes=ratios['src_eye'],
        c_s_lip=ratios['src_lip'],
        c_d_eyes=ratios['drv_eye'],
        c_d_lip=ratios['drv_lip'],
    )
    return got, want


REGIONS = ('all', 'exp', 'pose', 'lip', 'eyes')


@pytest.mark.parametrize(
    'relative,region,src_video,drv_video',
    [
        (rel, reg, sv, dv)
        for rel, reg, (sv, dv) in itertools.product(
            (True, False), REGIONS, ((False, True), (False, False), (True, True), (True, False))
        )
    ],
)
def test_regions_and_input_kinds(models, relative, region, src_video, drv_video):
    options = AnimateOptions(
        flag_relative_motion=relative,
        animation_region=region,
        driving_option='pose-friendly',
        flag_stitching=False,
    )
    got, want = _case(models, options, src_video=src_video, drv_video=drv_video)
    np.testing.assert_allclose(got, want, atol=2e-5)


@pytest.mark.parametrize(
    'changes',
    [
        dict(),  # reference CLI defaults: relative, expression-friendly, stitching
        dict(driving_option='pose-friendly'),
        dict(driving_multiplier=1.7),
        dict(flag_stitching=False, flag_normalize_lip=True, lip_normalize_threshold=0.1),
        dict(flag_normalize_lip=True, lip_normalize_threshold=0.1),
        dict(flag_eye_retargeting=True),
        dict(flag_lip_retargeting=True, lip_retargeting_multiplier=0.5),
        dict(
            flag_eye_retargeting=True,
            flag_lip_retargeting=True,
            flag_stitching=False,
            eyes_retargeting_multiplier=2.0,
        ),
        dict(flag_eye_retargeting=True, flag_relative_motion=False),
    ],
)
def test_post_processing_options(models, changes):
    options = AnimateOptions(**changes)
    got, want = _case(models, options, src_video=False, drv_video=True, seed=1)
    np.testing.assert_allclose(got, want, atol=2e-5)


@pytest.mark.parametrize(
    'changes',
    [
        dict(flag_source_video_eye_retargeting=True, flag_stitching=False),
        dict(flag_source_video_eye_retargeting=True, source_video_eye_retargeting_threshold=0.5),
        dict(flag_normalize_lip=True, lip_normalize_threshold=0.1),
    ],
)
def test_source_video_options(models, changes):
    got, want = _case(models, AnimateOptions(**changes), src_video=True, drv_video=True, seed=2)
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_kalman_smoother_matches_a_textbook_rts():
    rng = np.random.default_rng(0)
    y = np.cumsum(rng.normal(size=(30, 2)), axis=0) * 1e-3
    q, r = 1e-5, 3e-7
    got = kalman_smooth(y, r, q)
    for d in range(2):  # scalar RTS, written out
        m, p, mp, pp = [], [], [], []
        mean, cov = y[0, d], 1.0
        for i in range(30):
            if i:
                mean, cov = m[-1], p[-1] + q
            mp.append(mean)
            pp.append(cov)
            k = cov / (cov + r)
            m.append(mean + k * (y[i, d] - mean))
            p.append((1 - k) * cov)
        s = m[:]
        for i in range(28, -1, -1):
            s[i] = m[i] + p[i] / pp[i + 1] * (s[i + 1] - mp[i + 1])
        np.testing.assert_allclose(got[:, d], s, rtol=1e-5, atol=1e-9)
    # Heavier observation noise smooths more.
    assert (
        np.abs(np.diff(kalman_smooth(y, 1e-3, q), axis=0)).sum() < np.abs(np.diff(y, axis=0)).sum()
    )
