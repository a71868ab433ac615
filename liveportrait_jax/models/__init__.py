"""The five LivePortrait networks as Flax NNX modules, the model set they form, and the functional
core over them (models/core.py)."""

from liveportrait_jax.models.appearance import AppearanceFeatureExtractor
from liveportrait_jax.models.convnextv2 import ConvNeXtV2, MotionExtractor
from liveportrait_jax.models.model_set import (
    BASE_NETWORKS,
    NETWORKS,
    STITCHING_NETWORKS,
    build_network,
    build_networks,
)
from liveportrait_jax.models.spade import SPADEDecoder
from liveportrait_jax.models.stitching import StitchingRetargetingNetwork
from liveportrait_jax.models.warping import WarpingNetwork

__all__ = [
    'AppearanceFeatureExtractor',
    'ConvNeXtV2',
    'MotionExtractor',
    'SPADEDecoder',
    'StitchingRetargetingNetwork',
    'WarpingNetwork',
    'NETWORKS',
    'BASE_NETWORKS',
    'STITCHING_NETWORKS',
    'build_network',
    'build_networks',
]
