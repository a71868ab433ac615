"""liveportrait-jax: LivePortrait portrait animation in JAX / Flax NNX.

    import liveportrait_jax as lp
    models = lp.load_models('weights/converted')        # or lp.init_random_models('tiny')
    f_s = models.extract_feature_3d(images)              # (B, 256, 256, 3) in [0, 1]
    info = models.get_kp_info(images)
    x_s = lp.transform_keypoints(info)
    out = models.warp_decode(f_s, x_s, x_d)['out']       # (B, 512, 512, 3)
"""

from liveportrait_jax.api import (
    LivePortraitModels,
    build_models,
    init_random_models,
    load_models,
    refine_kp_info,
)
from liveportrait_jax.ops.keypoints import get_rotation_matrix, transform_keypoints

__version__ = '0.1.0'

__all__ = [
    'LivePortraitModels', 'build_models', 'get_rotation_matrix', 'init_random_models',
    'load_models', 'refine_kp_info', 'transform_keypoints',
]
