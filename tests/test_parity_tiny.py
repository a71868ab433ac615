"""Every network and keypoint function against the reference's outputs (tiny config, batch of 2).

Tolerance: max abs error <= 1e-4 after the layout transposes (NCHW/NCDHW -> channels-last).
"""

import numpy as np
import pytest

import liveportrait_jax as lp
from liveportrait_jax.ops.keypoints import headpose_pred_to_degree

TOL = 1e-4


def nchw(x):
    return np.moveaxis(x, 1, -1)


def assert_close(actual, expected, name):
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, f'{name}: shape {actual.shape} vs {expected.shape}'
    err = float(np.max(np.abs(actual - expected)))
    assert err <= TOL, f'{name}: max abs error {err:.3g} > {TOL}'
    return err


@pytest.fixture(scope='module')
def models(tiny_models):
    return tiny_models


def test_converted_weights_equal_direct_load(tiny_models, tiny_converted):
    """The converter's orbax output holds exactly the arrays of loading the .pth files directly."""
    import jax

    converted = lp.load_models(tiny_converted)
    for name, state in tiny_models.states.items():
        a, b = jax.tree.leaves(state), jax.tree.leaves(converted.states[name])
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name)


@pytest.fixture(scope='module')
def warped(models, tiny_ref):
    return models.warp_decode(
        nchw(tiny_ref['feature_3d']), tiny_ref['kp_source'], tiny_ref['kp_driving']
    )


def test_appearance_feature_extractor(models, tiny_ref):
    f_s = models.extract_feature_3d(nchw(tiny_ref['image']))
    assert_close(f_s, nchw(tiny_ref['feature_3d']), 'F')


def test_motion_extractor_heads(models, tiny_ref):
    raw = models.motion_heads(nchw(tiny_ref['image']))
    for k in ('pitch', 'yaw', 'roll', 't', 'exp', 'scale', 'kp'):
        assert_close(raw[k], tiny_ref[f'motion_{k}'], f'M {k}')


def test_get_kp_info(models, tiny_ref):
    info = models.get_kp_info(nchw(tiny_ref['image']))
    for k in ('pitch', 'yaw', 'roll', 't', 'exp', 'scale', 'kp'):
        assert_close(info[k], tiny_ref[f'kp_info_{k}'], f'kp_info {k}')


def test_rotation_and_transform(tiny_ref):
    info = {k[len('kp_info_') :]: v for k, v in tiny_ref.items() if k.startswith('kp_info_')}
    rot = lp.get_rotation_matrix(info['pitch'], info['yaw'], info['roll'])
    assert_close(rot, tiny_ref['rotation'], 'rotation')
    assert_close(lp.transform_keypoints(info), tiny_ref['kp_transformed'], 'transform_keypoints')


def test_headpose_degrees(tiny_ref):
    deg = headpose_pred_to_degree(tiny_ref['headpose_bins'])
    assert_close(deg, tiny_ref['headpose_degrees'], 'headpose degrees')


def test_stitching_and_retargeting(models, tiny_ref):
    x_s, x_d = tiny_ref['kp_source'], tiny_ref['kp_driving']
    assert_close(models.stitching(x_s, x_d), tiny_ref['stitching_out'], 'stitching')
    assert_close(
        models.retarget_eye(x_s, tiny_ref['eye_ratio']),
        tiny_ref['retarget_eye_out'],
        'retarget_eye',
    )
    assert_close(
        models.retarget_lip(x_s, tiny_ref['lip_ratio']),
        tiny_ref['retarget_lip_out'],
        'retarget_lip',
    )


def test_warping_network(warped, tiny_ref):
    assert_close(warped['mask'], nchw(tiny_ref['dense_mask']), 'dense motion mask')
    assert_close(warped['deformation'], tiny_ref['warp_deformation'], 'deformation')
    assert_close(warped['occlusion_map'], nchw(tiny_ref['warp_occlusion_map']), 'occlusion map')
    assert_close(warped['warped_feature'], nchw(tiny_ref['warp_out']), 'W out')


def test_spade_generator_alone(models, tiny_ref):
    assert_close(models.decode(nchw(tiny_ref['warp_out'])), nchw(tiny_ref['generator_out']), 'G')


def test_warp_decode_end_to_end(warped, tiny_ref):
    assert_close(warped['out'], nchw(tiny_ref['generator_out']), 'warp_decode out')
