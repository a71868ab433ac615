"""The public API on random tiny models: shapes, batching, dtype options."""

import jax.numpy as jnp
import numpy as np
import pytest

import liveportrait_jax as lp


@pytest.fixture(scope='module')
def images():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, size=(3, 64, 64, 3)).astype(np.float32)


def test_random_models_are_labelled(models):
    assert models.random_weights and 'RANDOM' in repr(models)


def test_shapes_and_batch_independence(models, images):
    f_s = models.extract_feature_3d(images)
    assert f_s.shape == (3, 16, 16, 16, 4)
    info = models.get_kp_info(images)
    assert info['kp'].shape == (3, 21, 3) and info['exp'].shape == (3, 21, 3)
    assert info['pitch'].shape == (3, 1) and info['scale'].shape == (3, 1)
    x = lp.transform_keypoints(info)
    assert x.shape == (3, 21, 3)
    assert models.stitching(x, x[::-1]).shape == (3, 21, 3)
    assert models.retarget_eye(x, np.zeros((3, 3), np.float32)).shape == (3, 21, 3)
    assert models.retarget_lip(x, np.zeros((3, 2), np.float32)).shape == (3, 21, 3)
    out = models.warp_decode(f_s, x, x[::-1])
    assert out['out'].shape == (3, 128, 128, 3)
    assert out['occlusion_map'].shape == (3, 16, 16, 1)
    assert out['deformation'].shape == (3, 16, 16, 16, 3)
    o = np.asarray(out['out'])
    assert o.min() >= 0 and o.max() <= 1
    # Batch entries are independent: reversing the batch reverses the outputs (same shape, so no
    # second compilation).
    flipped = models.warp_decode(f_s[::-1], x[::-1], x)
    np.testing.assert_allclose(np.asarray(flipped['out'])[::-1], o, atol=1e-5)


def test_images_of_other_sizes_are_resized(models, images):
    big = np.repeat(np.repeat(images[:1], 2, axis=1), 2, axis=2)
    assert models.extract_feature_3d(big).shape == (1, 16, 16, 16, 4)
    with pytest.raises(ValueError, match=r'\(B, H, W, 3\)'):
        models.extract_feature_3d(images[0])


def test_bfloat16_close_to_float32(tiny_models, tiny_ref):
    """bf16 compute on the fixture weights: errors against fp32 stay small (README lists the
    full-size numbers). Keypoint math and sampling coordinates stay float32."""
    from conftest import TINY

    bf16 = lp.load_torch_models(TINY, 'tiny', dtype=jnp.bfloat16)
    img = np.moveaxis(tiny_ref['image'], 1, -1)
    f32_info, bf_info = tiny_models.get_kp_info(img), bf16.get_kp_info(img)
    assert 0 < float(jnp.max(jnp.abs(f32_info['kp'] - bf_info['kp']))) < 0.05
    f_s = np.moveaxis(tiny_ref['feature_3d'], 1, -1)
    wa = tiny_models.warp(f_s, tiny_ref['kp_source'], tiny_ref['kp_driving'])
    wb = bf16.warp(f_s, tiny_ref['kp_source'], tiny_ref['kp_driving'])
    assert wb['deformation'].dtype == jnp.float32
    assert float(jnp.max(jnp.abs(wa['deformation'] - wb['deformation']))) < 1e-3
    assert float(jnp.max(jnp.abs(wa['out'] - wb['out']))) < 1e-2
    a, b = tiny_models.decode(wa['out']), bf16.decode(wa['out'])
    assert b.dtype == jnp.float32
    err = jnp.abs(a - b)
    assert 0 < float(jnp.mean(err)) < 0.02 and float(jnp.max(err)) < 0.2
