"""The animation pipeline: inputs, motion composition, chunked rendering, outputs."""

from liveportrait_jax.pipeline.animation import (
    AnimateResult,
    FramesResult,
    animate,
    animate_frames,
    plan_animation,
    render_chunks,
)
from liveportrait_jax.pipeline.editing import edit_portrait, retarget_video
from liveportrait_jax.pipeline.options import AnimateOptions

__all__ = [
    'AnimateOptions',
    'AnimateResult',
    'FramesResult',
    'animate',
    'animate_frames',
    'edit_portrait',
    'plan_animation',
    'render_chunks',
    'retarget_video',
]
