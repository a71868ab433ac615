"""The animation pipeline, in stages: read, faces, motion, compose, render, write (see animation.py)."""

from liveportrait_jax.pipeline.animation import (
    AnimateResult,
    FramesResult,
    animate,
    animate_frames,
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
    'retarget_video',
]
