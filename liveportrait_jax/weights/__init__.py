"""Checkpoint I/O: PyTorch-free `.pth` reading, strict key mapping, conversion to orbax."""

from liveportrait_jax.weights.errors import (
    CheckpointError,
    CheckpointMismatchError,
    UnsafeCheckpointError,
)
from liveportrait_jax.weights.torch_reader import load_torch_checkpoint

__all__ = [
    'CheckpointError',
    'CheckpointMismatchError',
    'UnsafeCheckpointError',
    'load_torch_checkpoint',
]
