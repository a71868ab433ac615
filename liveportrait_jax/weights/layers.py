"""How one PyTorch layer's tensors become one Flax layer's arrays (and back, for export).

Each kind lists the tensor names the PyTorch layer stores and converts them to the Flax leaf names,
transposing layouts: conv weight (O, I, *k) -> kernel (*k, I, O); linear (O, I) -> (I, O).
"""

import dataclasses
from typing import Callable

import numpy as np


def _conv_kernel(w):
    # (O, I, k1, ..., kn) -> (k1, ..., kn, I, O)
    n = w.ndim - 2
    return np.transpose(w, tuple(range(2, 2 + n)) + (1, 0))


def _conv_weight(k):
    n = k.ndim - 2
    return np.transpose(k, (n + 1, n) + tuple(range(n)))


def _fold_spectral_norm(weight_orig, weight_u, weight_v):
    """weight_orig / sigma with sigma = u . (W_mat v), W_mat = weight_orig as (O, -1).

    This is what torch.nn.utils.spectral_norm computes in eval mode: it uses the stored u and v and
    does no power iteration.
    """
    w_mat = weight_orig.reshape(weight_orig.shape[0], -1).astype(np.float64)
    sigma = float(np.dot(weight_u.astype(np.float64), w_mat @ weight_v.astype(np.float64)))
    if not np.isfinite(sigma) or sigma == 0.0:
        raise ValueError(f'spectral norm sigma is {sigma}')
    return (weight_orig.astype(np.float64) / sigma).astype(weight_orig.dtype)


@dataclasses.dataclass(frozen=True)
class LayerKind:
    name: str
    required: tuple  # torch tensor names that must be present
    optional: tuple  # torch tensor names that may be present (bias=False layers, BN counters)
    to_flax: Callable  # dict torch name -> array  ==>  dict flax leaf -> array
    to_torch: Callable = None  # inverse, for export (kinds that fine-tuning touches)


def _conv_to_flax(t):
    out = {'kernel': _conv_kernel(t['weight'])}
    if 'bias' in t:
        out['bias'] = t['bias']
    return out


def _linear_to_flax(t):
    out = {'kernel': np.transpose(t['weight'])}
    if 'bias' in t:
        out['bias'] = t['bias']
    return out


def _linear_to_torch(f):
    out = {'weight': np.ascontiguousarray(np.transpose(f['kernel']))}
    if 'bias' in f:
        out['bias'] = f['bias']
    return out


def _sn_conv_to_flax(t):
    out = {
        'kernel': _conv_kernel(_fold_spectral_norm(t['weight_orig'], t['weight_u'], t['weight_v']))
    }
    if 'bias' in t:
        out['bias'] = t['bias']
    return out


CONV = LayerKind(
    'conv',
    ('weight',),
    ('bias',),
    _conv_to_flax,
    lambda f: {
        'weight': np.ascontiguousarray(_conv_weight(f['kernel'])),
        **({'bias': f['bias']} if 'bias' in f else {}),
    },
)
LINEAR = LayerKind('linear', ('weight',), ('bias',), _linear_to_flax, _linear_to_torch)
# num_batches_tracked only counts training steps; it is read (so strict loading accounts for it) and
# dropped, since eval-mode BatchNorm never uses it.
BATCH_NORM = LayerKind(
    'batch_norm',
    ('weight', 'bias', 'running_mean', 'running_var'),
    ('num_batches_tracked',),
    lambda t: {
        'scale': t['weight'],
        'bias': t['bias'],
        'mean': t['running_mean'],
        'var': t['running_var'],
    },
)
LAYER_NORM = LayerKind(
    'layer_norm', ('weight', 'bias'), (), lambda t: {'scale': t['weight'], 'bias': t['bias']}
)
GRN = LayerKind('grn', ('gamma', 'beta'), (), lambda t: {'gamma': t['gamma'], 'beta': t['beta']})
SPECTRAL_CONV = LayerKind(
    'spectral_norm_conv', ('weight_orig', 'weight_u', 'weight_v'), ('bias',), _sn_conv_to_flax
)
