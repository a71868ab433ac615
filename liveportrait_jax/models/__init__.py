"""The five LivePortrait networks as Flax NNX modules, and a builder from a model config."""

from liveportrait_jax.models.appearance import AppearanceFeatureExtractor
from liveportrait_jax.models.convnextv2 import ConvNeXtV2, MotionExtractor
from liveportrait_jax.models.spade import SPADEDecoder
from liveportrait_jax.models.stitching import StitchingRetargetingNetwork
from liveportrait_jax.models.warping import WarpingNetwork

# Networks of a model set, in checkpoint order. The stitching file holds three MLPs.
NETWORKS = ('appearance_feature_extractor', 'motion_extractor', 'warping_module',
            'spade_generator', 'stitching', 'lip', 'eye')
BASE_NETWORKS = NETWORKS[:4]
STITCHING_NETWORKS = NETWORKS[4:]


def build_network(name, config, *, rngs, dtype=None):
    """Builds network `name` from a model config (configs/models.py) with random initial weights."""
    if name == 'appearance_feature_extractor':
        return AppearanceFeatureExtractor(**config.appearance_feature_extractor_params, rngs=rngs,
                                          dtype=dtype)
    if name == 'motion_extractor':
        return MotionExtractor(**config.motion_extractor_params, rngs=rngs, dtype=dtype)
    if name == 'warping_module':
        return WarpingNetwork(**config.warping_module_params, rngs=rngs, dtype=dtype)
    if name == 'spade_generator':
        return SPADEDecoder(**config.spade_generator_params, rngs=rngs, dtype=dtype)
    if name in STITCHING_NETWORKS:
        params = config.stitching_retargeting_module_params[name]
        return StitchingRetargetingNetwork(params.input_size, list(params.hidden_sizes),
                                           params.output_size, rngs=rngs, dtype=dtype)
    raise ValueError(f'unknown network {name!r}; expected one of {NETWORKS}')


__all__ = [
    'AppearanceFeatureExtractor', 'ConvNeXtV2', 'MotionExtractor', 'SPADEDecoder',
    'StitchingRetargetingNetwork', 'WarpingNetwork', 'NETWORKS', 'BASE_NETWORKS',
    'STITCHING_NETWORKS', 'build_network',
]
