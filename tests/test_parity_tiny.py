"""Every network and keypoint function against the reference's outputs (tiny config, batch of 2).

Tolerance: max abs error after the layout transposes (NCHW/NCDHW -> channels-last), per output
about 10x the error measured on CPU (float32), never looser than the project's 1e-4.
"""

import numpy as np
import pytest

import liveportrait_jax as lp
from liveportrait_jax.ops.keypoints import headpose_pred_to_degree

# Per output: (max abs error measured on CPU, JAX 0.7.1) x ~10, capped at the project's 1e-4.
TOL = {
    'F': 1.2e-6,  # measured 1.2e-7
    'M pitch': 6e-6,  # 6.0e-7 (the raw head-pose bins)
    'M yaw': 7e-6,  # 7.2e-7
    'M roll': 7e-6,  # 7.2e-7
    'M t': 3e-6,  # 2.8e-7
    'M exp': 8e-6,  # 7.8e-7
    'M scale': 3e-6,  # 3.0e-7
    'M kp': 5e-6,  # 4.5e-7
    'kp_info pitch': 8e-5,  # 7.6e-6 (degrees)
    'kp_info yaw': 8e-5,  # 7.6e-6
    'kp_info roll': 4e-5,  # 3.8e-6
    'kp_info t': 3e-6,  # 2.8e-7
    'kp_info exp': 8e-6,  # 7.8e-7
    'kp_info scale': 3e-6,  # 3.0e-7
    'kp_info kp': 5e-6,  # 4.5e-7
    'rotation': 4e-8,  # 3.7e-9
    'transform_keypoints': 5e-7,  # 4.5e-8
    'headpose degrees': 8e-5,  # 7.6e-6
    'stitching': 6e-7,  # 6.0e-8
    'retarget_eye': 3e-7,  # 3.0e-8
    'retarget_lip': 3e-7,  # 2.2e-8
    'dense motion mask': 2.4e-6,  # 2.4e-7
    'deformation': 5e-6,  # 4.8e-7
    'occlusion map': 2.4e-6,  # 2.4e-7
    'W out': 1e-6,  # 1.0e-7
    'G': 6e-5,  # 5.9e-6
    'warp_decode out': 1e-4,  # 1.2e-5 (W then G: the cap)
}


def nchw(x):
    return np.moveaxis(x, 1, -1)


def assert_close(actual, expected, name):
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, f'{name}: shape {actual.shape} vs {expected.shape}'
    err = float(np.max(np.abs(actual - expected)))
    assert err <= TOL[name], f'{name}: max abs error {err:.3g} > {TOL[name]}'
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
