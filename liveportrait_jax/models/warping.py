"""Warping network W: warps the source feature volume with the keypoint-driven dense motion."""

from flax import nnx

from liveportrait_jax.models.dense_motion import DenseMotionNetwork
from liveportrait_jax.models.layers import SameBlock2d, conv, fold_depth
from liveportrait_jax.ops.grid_sample import grid_sample_3d


class WarpingNetwork(nnx.Module):
    """f_s (B, D, H, W, C), kp_driving, kp_source (B, K, 3) -> dict:
    out (B, H, W, 256) warped 2-D feature, deformation (B, D, H, W, 3), occlusion_map (B, H, W, 1),
    mask (B, D, H, W, K+1)."""

    def __init__(
        self,
        num_kp,
        block_expansion,
        max_features,
        num_down_blocks,
        reshape_channel,
        estimate_occlusion_map=False,
        dense_motion_params=None,
        *,
        rngs,
        dtype=None,
        flag_use_occlusion_map=True,
    ):
        if dense_motion_params is None:
            raise ValueError('the LivePortrait warping network needs dense_motion_params')
        self.dense_motion_network = DenseMotionNetwork(
            num_kp=num_kp,
            feature_channel=reshape_channel,
            estimate_occlusion_map=estimate_occlusion_map,
            rngs=rngs,
            dtype=dtype,
            **dict(dense_motion_params),
        )
        width = block_expansion * (2**num_down_blocks)
        self.third = SameBlock2d(max_features, width, lrelu=True, rngs=rngs, dtype=dtype)
        self.fourth = conv(width, width, (1, 1), rngs=rngs, dtype=dtype)
        self.flag_use_occlusion_map = flag_use_occlusion_map
        self.estimate_occlusion_map = estimate_occlusion_map

    def __call__(self, feature_3d, kp_driving, kp_source):
        dense = self.dense_motion_network(feature_3d, kp_driving, kp_source)
        deformation = dense['deformation']
        out = grid_sample_3d(feature_3d, deformation).astype(feature_3d.dtype)  # (B, D, H, W, C)
        out = self.fourth(self.third(fold_depth(out)))  # (B, H, W, 256)
        occlusion = dense.get('occlusion_map')
        if self.flag_use_occlusion_map and occlusion is not None:
            out = out * occlusion.astype(out.dtype)
        return {
            'out': out,
            'deformation': deformation,
            'occlusion_map': occlusion,
            'mask': dense['mask'],
        }
