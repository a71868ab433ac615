"""Pure JAX operators: grid sampling, coordinate grids, heatmaps, head pose and keypoint math."""

from liveportrait_jax.ops.grid_sample import grid_sample_3d
from liveportrait_jax.ops.keypoints import (
    get_rotation_matrix,
    headpose_pred_to_degree,
    kp2gaussian,
    make_coordinate_grid,
    refine_kp_info,
    transform_keypoints,
)
from liveportrait_jax.ops.stitching import (
    apply_stitching_delta,
    concat_feat,
)

__all__ = [
    'apply_stitching_delta',
    'concat_feat',
    'get_rotation_matrix',
    'grid_sample_3d',
    'headpose_pred_to_degree',
    'kp2gaussian',
    'make_coordinate_grid',
    'refine_kp_info',
    'transform_keypoints',
]
