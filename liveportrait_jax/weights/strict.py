"""Strict mapping of a PyTorch state dict onto a Flax NNX module's parameters.

Every checkpoint key must be used, every Flax parameter assigned, every shape equal; all failures are
collected and raised together in one CheckpointMismatchError.
"""

import re

import numpy as np
from flax import nnx

from liveportrait_jax.weights.errors import CheckpointMismatchError
from liveportrait_jax.weights.mapping import TABLES


def flat_state_shapes(module_or_state):
    """{dotted path: (shape, dtype)} of every variable (params and batch stats) of a module/state."""
    state = module_or_state
    if isinstance(module_or_state, nnx.Module):
        state = nnx.state(module_or_state)
    out = {}
    for path, var in nnx.to_flat_state(state):
        # A Variable forwards .shape/.dtype to its value (an array or a ShapeDtypeStruct).
        out['.'.join(str(p) for p in path)] = (tuple(var.shape), var.dtype)
    return out


def _kind_for(table, prefix):
    for pattern, kind in table:
        if re.fullmatch(pattern, prefix):
            return kind
    return None


def map_state_dict(network, state_dict, target_shapes, source='<state dict>'):
    """Maps a PyTorch state dict of `network` to {flax dotted path: float32 array}, strictly.

    Args:
      network: a key of mapping.TABLES.
      state_dict: {torch key: numpy array}, any DDP `module.` prefix already removed.
      target_shapes: {flax dotted path: (shape, dtype)} from `flat_state_shapes` of the target model.
      source: file name for error messages.

    Raises:
      CheckpointMismatchError listing every missing key, unexpected key and shape mismatch.
    """
    table = TABLES[network]
    groups = {}
    unexpected, missing, mismatched = [], [], []
    for key, value in state_dict.items():
        prefix, _, leaf = key.rpartition('.')
        groups.setdefault(prefix, {})[leaf] = value

    mapped = {}
    for prefix, tensors in groups.items():
        kind = _kind_for(table, prefix)
        if kind is None:
            unexpected.extend(
                f'{prefix}.{leaf} (no layer of the model is named {prefix})' for leaf in tensors
            )
            continue
        allowed = set(kind.required) | set(kind.optional)
        for leaf in tensors:
            if leaf not in allowed:
                unexpected.append(f'{prefix}.{leaf} (a {kind.name} layer has no {leaf!r})')
        absent = [leaf for leaf in kind.required if leaf not in tensors]
        if absent:
            missing.extend(f'{prefix}.{leaf}' for leaf in absent)
            continue
        try:
            converted = kind.to_flax({k: np.asarray(v) for k, v in tensors.items() if k in allowed})
        except ValueError as e:
            mismatched.append(f'{prefix}: {e}')
            continue
        for leaf, value in converted.items():
            path = f'{prefix}.{leaf}'
            if path not in target_shapes:
                unexpected.append(f'{path} (from {prefix}; the model has no such parameter)')
                continue
            shape = target_shapes[path][0]
            if tuple(value.shape) != shape:
                mismatched.append(
                    f'{path}: checkpoint {tuple(value.shape)} (after layout '
                    f'transpose) vs model {shape}'
                )
                continue
            mapped[path] = value.astype(np.float32)
    for path in target_shapes:
        if path not in mapped and not any(m.startswith(path + ':') for m in mismatched):
            prefix = path.rpartition('.')[0]
            if prefix not in groups or _kind_for(table, prefix) is None:
                missing.append(f'{path} (no checkpoint layer {prefix})')
            elif not any(item.startswith(prefix + '.') for item in missing):
                missing.append(f'{path} (layer {prefix} is in the checkpoint without it)')
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(source, missing, unexpected, mismatched)
    return mapped


def strip_ddp_prefix(state_dict):
    """Removes DistributedDataParallel's `module.` prefix from every key that has it."""
    return {
        (k[len('module.') :] if k.startswith('module.') else k): v for k, v in state_dict.items()
    }
