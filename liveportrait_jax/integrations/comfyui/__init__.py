"""ComfyUI custom nodes for liveportrait-jax: a loader and a process node (see README.md here).

ComfyUI imports this folder as a custom node package (link or copy it into ComfyUI/custom_nodes);
`liveportrait_jax` itself must be pip-installed in ComfyUI's Python.
"""

import os

# ComfyUI shares the GPU with PyTorch, so JAX must not take 75% of the GPU memory up front (its
# default). This only works if no JAX GPU backend has been started yet in the process; set the
# variable yourself before starting ComfyUI to choose otherwise.
os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')

from .nodes import (  # noqa: E402
    NODE_CLASS_MAPPINGS,
    NODE_DISPLAY_NAME_MAPPINGS,
    LivePortraitLoader,
    LivePortraitPipe,
    LivePortraitProcess,
)

__all__ = [
    'NODE_CLASS_MAPPINGS',
    'NODE_DISPLAY_NAME_MAPPINGS',
    'LivePortraitLoader',
    'LivePortraitPipe',
    'LivePortraitProcess',
]
