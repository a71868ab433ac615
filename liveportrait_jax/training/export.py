"""Export heads back to the reference's `stitching_retargeting_module.pth` layout, without PyTorch."""

import numpy as np

from liveportrait_jax.weights.layers import LINEAR
from liveportrait_jax.weights.mapping import DDP_PREFIX, STITCHING_FILE_KEYS
from liveportrait_jax.weights.torch_writer import save_torch_checkpoint


def _mlp_state_dict(pure):
    """A StitchingRetargetingNetwork's pure params {'mlp': {'0': {kernel, bias}, ...}} -> the
    reference's state dict {'module.mlp.0.weight': (O, I), ...}."""
    out = {}
    for idx in sorted(pure['mlp'], key=int):
        layer = {k: np.asarray(v, np.float32) for k, v in pure['mlp'][idx].items()}
        for name, value in LINEAR.to_torch(layer).items():
            out[f'{DDP_PREFIX}mlp.{idx}.{name}'] = np.ascontiguousarray(value)
    return out


def export_stitching_module(models, path, overrides=None):
    """Writes all three S heads of `models` (with `overrides` {'stitching'|'eye'|'lip': pure params}
    taking the place of a head) as the reference's stitching_retargeting_module.pth."""
    from flax import nnx

    overrides = overrides or {}
    tree = {}
    for name, key in STITCHING_FILE_KEYS.items():
        pure = overrides.get(name)
        if pure is None:
            pure = nnx.to_pure_dict(models.states[name])
        tree[key] = _mlp_state_dict(pure)
    return save_torch_checkpoint(path, tree, archive_name='stitching_retargeting_module')
