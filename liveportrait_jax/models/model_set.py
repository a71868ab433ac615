"""The model set, its one home: which networks it holds, building them (abstract or random), and
filling them from a flat {dotted path: array} dict (what the checkpoint mapping produces).

Everything that makes or loads networks (the public API, checkpoint I/O, training export) goes
through here; this module imports only the network modules and the model configs.
"""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from liveportrait_jax import stopping
from liveportrait_jax.models.appearance import AppearanceFeatureExtractor
from liveportrait_jax.models.configs import get_config
from liveportrait_jax.models.convnextv2 import MotionExtractor
from liveportrait_jax.models.spade import SPADEDecoder
from liveportrait_jax.models.stitching import StitchingRetargetingNetwork
from liveportrait_jax.models.warping import WarpingNetwork

# Networks of a model set, in checkpoint order. The stitching file holds the last three MLPs.
NETWORKS = (
    'appearance_feature_extractor',
    'motion_extractor',
    'warping_module',
    'spade_generator',
    'stitching',
    'lip',
    'eye',
)
BASE_NETWORKS = NETWORKS[:4]
STITCHING_NETWORKS = NETWORKS[4:]


def resolve_config(config):
    """A model config, from itself or its name ('full', 'tiny')."""
    return get_config(config) if isinstance(config, str) else config


def build_network(name, config, *, rngs, dtype=None):
    """Builds network `name` of a model config (models/configs.py) with Flax's initial weights."""
    if name == 'appearance_feature_extractor':
        return AppearanceFeatureExtractor(
            **config.appearance_feature_extractor_params, rngs=rngs, dtype=dtype
        )
    if name == 'motion_extractor':
        return MotionExtractor(**config.motion_extractor_params, rngs=rngs, dtype=dtype)
    if name == 'warping_module':
        return WarpingNetwork(**config.warping_module_params, rngs=rngs, dtype=dtype)
    if name == 'spade_generator':
        return SPADEDecoder(**config.spade_generator_params, rngs=rngs, dtype=dtype)
    if name in STITCHING_NETWORKS:
        params = config.stitching_retargeting_module_params[name]
        return StitchingRetargetingNetwork(
            params.input_size, list(params.hidden_sizes), params.output_size, rngs=rngs, dtype=dtype
        )
    raise ValueError(f'unknown network {name!r}; expected one of {NETWORKS}')


def build_networks(config='full', *, seed=0, dtype=jnp.float32, abstract=False):
    """{name: nnx.Module} for every network of `config`: abstract (shapes only) or random.

    Random weights are drawn with numpy rather than Flax's initialisers: those compile one XLA
    program per parameter, which costs tens of seconds on CPU. Kernels get N(0, 1/fan_in) (LeCun
    normal), biases 0; norms start as identities (scale 1, bias 0, running mean 0, variance 1).
    """
    config = resolve_config(config)

    def make():
        rngs = nnx.Rngs(seed)
        # The stitching/retargeting MLPs cost nothing next to the conv nets; they stay float32 so
        # a reduced-precision model keeps exact keypoint offsets.
        networks = {}
        for name in NETWORKS:
            stopping.check()  # tracing the networks takes seconds: a safe point between them
            networks[name] = build_network(
                name, config, rngs=rngs, dtype=None if name in STITCHING_NETWORKS else dtype
            )
        return networks

    modules = nnx.eval_shape(make)
    if abstract:
        return modules
    rng = np.random.default_rng(seed)

    def leaf(path, shape):
        stopping.check()  # model set-up takes seconds: a safe point per parameter
        return _random_leaf(path[-1], shape, rng)

    return {name: fill_module(modules[name], leaf) for name in NETWORKS}


def _random_leaf(leaf, shape, rng):
    if leaf == 'kernel':
        fan_in = int(np.prod(shape[:-1]))
        return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
    if leaf in ('scale', 'var'):
        return np.ones(shape, np.float32)
    return np.zeros(shape, np.float32)  # bias, mean, GRN gamma/beta


def fill_state(module, value_of):
    """nnx.State of `module` (abstract or concrete) with every leaf replaced.

    value_of: {dotted path: array}, or a function (path tuple, shape) -> array.
    """
    if not callable(value_of):
        flat = value_of
        value_of = lambda path, shape: flat['.'.join(str(p) for p in path)]  # noqa: E731
    state = nnx.state(module)
    pure = nnx.to_pure_dict(state)
    for path, var in nnx.to_flat_state(state):
        node = pure
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = jnp.asarray(value_of(path, var.shape))
    nnx.replace_by_pure_dict(state, pure)
    return state


def fill_module(module, value_of):
    """A concrete copy of `module` with every leaf from `value_of` (see fill_state)."""
    graphdef, _ = nnx.split(module)
    return nnx.merge(graphdef, fill_state(module, value_of))


def networks_from_flat(flat_by_network, config, *, dtype=jnp.float32):
    """{name: nnx.Module} from {network: {dotted path: array}} (already strictly mapped)."""
    abstract = build_networks(config, dtype=dtype, abstract=True)
    return {name: fill_module(abstract[name], flat_by_network[name]) for name in NETWORKS}
