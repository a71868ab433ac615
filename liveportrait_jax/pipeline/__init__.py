"""The animation pipeline: inputs, motion composition, chunked rendering, outputs."""

from liveportrait_jax.pipeline.animate import AnimateResult, animate
from liveportrait_jax.pipeline.options import AnimateOptions

__all__ = ['AnimateOptions', 'AnimateResult', 'animate']
