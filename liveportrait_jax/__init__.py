"""liveportrait-jax: LivePortrait portrait animation in JAX / Flax NNX.

    import liveportrait_jax as lp
    models = lp.load_models('weights')                   # or lp.init_random_models('tiny')
    f_s = models.extract_feature_3d(images)              # (B, 256, 256, 3) in [0, 1]
    info = models.get_kp_info(images)
    x_s = lp.transform_keypoints(info)
    out = models.warp_decode(f_s, x_s, x_d)['out']       # (B, 512, 512, 3)

Importing the package needs neither MediaPipe nor OpenCV: only face detection (faces/) does.
"""

from liveportrait_jax.api import (
    LivePortraitModels,
    init_random_models,
    load_models,
    load_torch_models,
    with_stitching_weights,
)
from liveportrait_jax.demo import RANDOM_LABEL, load_models_or_demo, output_label
from liveportrait_jax.ops.keypoints import get_rotation_matrix, refine_kp_info, transform_keypoints

__version__ = '0.1.0'

__all__ = [
    'LivePortraitModels',
    'RANDOM_LABEL',
    'get_rotation_matrix',
    'init_random_models',
    'load_models',
    'load_models_or_demo',
    'load_torch_models',
    'output_label',
    'refine_kp_info',
    'transform_keypoints',
    'with_stitching_weights',
]
