"""The public model API: `load_models`, `init_random_models` and the jitted `LivePortraitModels`.

Layouts are channels-last everywhere: images (B, H, W, 3) float in [0, 1]; feature volumes
(B, D, H, W, C); keypoints (B, 21, 3). Every method is jitted and batched over the leading axis; each
input shape compiles once.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from liveportrait_jax.config import get_model_config
from liveportrait_jax.models import NETWORKS, STITCHING_NETWORKS, build_network
from liveportrait_jax.ops.keypoints import headpose_pred_to_degree
from liveportrait_jax.ops.stitching import apply_stitching_delta, concat_feat


def _jit_method(graphdef, fn):
    """jit of fn(module, *args) as a pure function of the module's state (split once, merged inside)."""

    @jax.jit
    def run(state, *args):
        return fn(nnx.merge(graphdef, state), *args)

    return run


def refine_kp_info(raw):
    """Raw motion-extractor heads -> kp info: degrees (B, 1) for pitch/yaw/roll; kp, exp (B, K, 3)."""
    bs = raw['kp'].shape[0]
    out = dict(raw)
    for k in ('pitch', 'yaw', 'roll'):
        out[k] = headpose_pred_to_degree(raw[k])[:, None]
    out['kp'] = raw['kp'].reshape(bs, -1, 3)
    out['exp'] = raw['exp'].reshape(bs, -1, 3)
    return out


class LivePortraitModels:
    """The networks F, M, W, G and S of one model set, with jitted, batched entry points.

    Attributes:
      config: the ml_collections model config.
      dtype: compute dtype (float32, or bfloat16 for the convolutions; keypoint math, sampling
        coordinates, softmaxes and outputs stay float32).
      random_weights: True when the weights are random (tests, demo mode), never real.
      networks: {name: nnx.Module}; `states` holds their current nnx.State (replace an entry to swap
        weights, e.g. after fine-tuning a head).
    """

    def __init__(self, networks, config, *, dtype=jnp.float32, random_weights=False, source=None):
        missing = [n for n in NETWORKS if n not in networks]
        if missing:
            raise ValueError(f'model set lacks networks {missing}')
        self.config = config
        self.dtype = jnp.dtype(dtype)
        self.random_weights = random_weights
        self.source = source
        self.networks = dict(networks)
        self.graphdefs, self.states = {}, {}
        for name, module in self.networks.items():
            self.graphdefs[name], self.states[name] = nnx.split(module)
        self.input_size = int(config.get('input_size', 256))
        g = self.graphdefs
        self._feature = _jit_method(g['appearance_feature_extractor'],
                                    lambda m, x: m(x).astype(jnp.float32))
        self._motion = _jit_method(g['motion_extractor'], lambda m, x: m(x))
        self._mlp = {n: _jit_method(g[n], lambda m, x: m(x).astype(jnp.float32))
                     for n in ('stitching', 'lip', 'eye')}

        dtype = self.dtype

        def warp(m, f_s, x_s, x_d):
            ret = m(f_s.astype(dtype), x_d, x_s)
            return {'out': ret['out'].astype(jnp.float32), 'occlusion_map': ret['occlusion_map'],
                    'deformation': ret['deformation'], 'mask': ret['mask']}

        # W and G are jitted apart so that `decode` and `warp_decode` share one compiled G; the
        # animation pipeline fuses them in its own jitted chunk function.
        self._warp = _jit_method(g['warping_module'], warp)
        self._decode = _jit_method(g['spade_generator'], lambda m, x: m(x.astype(dtype)))

    def __repr__(self):
        kind = 'RANDOM weights' if self.random_weights else f'weights from {self.source}'
        return (f'LivePortraitModels(config={self.config.get("name", "?")!r}, '
                f'dtype={self.dtype.name}, {kind})')

    def _images(self, images):
        images = jnp.asarray(images, jnp.float32)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f'images must be (B, H, W, 3) floats in [0, 1], got {images.shape}')
        size = self.input_size
        if images.shape[1:3] != (size, size):
            images = jax.image.resize(images, (images.shape[0], size, size, 3), 'linear')
        return jnp.clip(images, 0.0, 1.0).astype(self.dtype)

    def extract_feature_3d(self, images):
        """F: images (B, H, W, 3) in [0, 1] -> appearance feature volume (B, D, H', W', C) float32."""
        return self._feature(self.states['appearance_feature_extractor'], self._images(images))

    def motion_heads(self, images):
        """M: images -> raw heads: pitch/yaw/roll (B, 66) logits, t (B, 3), exp, kp (B, 63),
        scale (B, 1)."""
        return self._motion(self.states['motion_extractor'], self._images(images))

    def get_kp_info(self, images):
        """M + refinement: dict pitch, yaw, roll (B, 1) degrees; t (B, 3); exp, kp (B, 21, 3);
        scale (B, 1)."""
        return _refine(self.motion_heads(images))

    def stitching(self, x_s, x_d):
        """S: source and driving keypoints (B, K, 3) -> stitched driving keypoints (B, K, 3)."""
        x_s, x_d = jnp.asarray(x_s, jnp.float32), jnp.asarray(x_d, jnp.float32)
        return _stitch(self._mlp['stitching'], self.states['stitching'], x_s, x_d)

    def stitching_delta(self, x_s, x_d):
        """The raw stitching output (B, 3K + 2) for (x_s, x_d)."""
        return self._mlp['stitching'](self.states['stitching'], concat_feat(x_s, x_d))

    def retarget_eye(self, x_s, eye_ratio):
        """R_eyes: x_s (B, K, 3), eye_ratio (B, 3) = [c_s_eye_left, c_s_eye_right, c_d_eye] ->
        keypoint offsets (B, K, 3)."""
        x_s = jnp.asarray(x_s, jnp.float32)
        delta = self._mlp['eye'](self.states['eye'], concat_feat(x_s, jnp.asarray(eye_ratio,
                                                                                  jnp.float32)))
        return delta.reshape(x_s.shape)

    def retarget_lip(self, x_s, lip_ratio):
        """R_lip: x_s (B, K, 3), lip_ratio (B, 2) = [c_s_lip, c_d_lip] -> offsets (B, K, 3)."""
        x_s = jnp.asarray(x_s, jnp.float32)
        delta = self._mlp['lip'](self.states['lip'], concat_feat(x_s, jnp.asarray(lip_ratio,
                                                                                 jnp.float32)))
        return delta.reshape(x_s.shape)

    def warp(self, f_s, x_s, x_d):
        """W: f_s (B, D, H, W, C), x_s, x_d (B, K, 3) -> dict out (B, 64, 64, 256) warped feature,
        occlusion_map (B, 64, 64, 1), deformation (B, D, H, W, 3), mask (B, D, H, W, K+1)."""
        return self._warp(self.states['warping_module'], jnp.asarray(f_s),
                          jnp.asarray(x_s, jnp.float32), jnp.asarray(x_d, jnp.float32))

    def decode(self, feature):
        """G: warped feature (B, 64, 64, 256) -> image (B, 512, 512, 3) in [0, 1]."""
        return self._decode(self.states['spade_generator'], jnp.asarray(feature))

    def warp_decode(self, f_s, x_s, x_d):
        """W + G: f_s (B, D, H, W, C), x_s, x_d (B, K, 3) -> dict
        out (B, 512, 512, 3) in [0, 1]; and W's intermediates occlusion_map (B, 64, 64, 1),
        deformation (B, D, H, W, 3), mask (B, D, H, W, K+1), warped_feature (B, 64, 64, 256)
        (released config sizes)."""
        ret = self.warp(f_s, x_s, x_d)
        ret['warped_feature'] = ret.pop('out')
        ret['out'] = self.decode(ret['warped_feature'])
        return ret


@jax.jit
def _refine(raw):
    return refine_kp_info(raw)


@functools.partial(jax.jit, static_argnums=0)
def _stitch(mlp, state, x_s, x_d):
    return apply_stitching_delta(x_d, mlp(state, concat_feat(x_s, x_d)))


def _resolve_config(config):
    if isinstance(config, str):
        return get_model_config(config)
    return config


def build_models(config='full', *, seed=0, dtype=jnp.float32, abstract=False):
    """{name: nnx.Module} for every network of `config`: abstract (shapes only) or random.

    Random weights are drawn with numpy rather than Flax's initialisers: those compile one XLA
    program per parameter, which costs tens of seconds on CPU. Kernels get N(0, 1/fan_in) (LeCun
    normal), biases 0; norms start as identities (scale 1, bias 0, running mean 0, variance 1).
    """
    config = _resolve_config(config)

    def make():
        rngs = nnx.Rngs(seed)
        # The stitching/retargeting MLPs cost nothing next to the conv nets; they stay float32 so
        # a reduced-precision model keeps exact keypoint offsets.
        return {name: build_network(name, config, rngs=rngs,
                                    dtype=None if name in STITCHING_NETWORKS else dtype)
                for name in NETWORKS}

    modules = nnx.eval_shape(make)
    if abstract:
        return modules
    rng = np.random.default_rng(seed)
    out = {}
    for name in NETWORKS:
        graphdef, state = nnx.split(modules[name])
        pure = nnx.to_pure_dict(state)
        for path, var in nnx.to_flat_state(state):
            node = pure
            for p in path[:-1]:
                node = node[p]
            node[path[-1]] = jnp.asarray(_random_leaf(path[-1], var.value.shape, rng))
        nnx.replace_by_pure_dict(state, pure)
        out[name] = nnx.merge(graphdef, state)
    return out


def _random_leaf(leaf, shape, rng):
    if leaf == 'kernel':
        fan_in = int(np.prod(shape[:-1]))
        return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
    if leaf in ('scale', 'var'):
        return np.ones(shape, np.float32)
    return np.zeros(shape, np.float32)  # bias, mean, GRN gamma/beta


def init_random_models(config='full', seed=0, *, dtype=jnp.float32):
    """A LivePortraitModels with RANDOM weights for tests and demos (see `build_models`).

    Its outputs mean nothing; `random_weights` is True so that callers can label them as such.
    """
    config = _resolve_config(config)
    return LivePortraitModels(build_models(config, seed=seed, dtype=dtype), config, dtype=dtype,
                              random_weights=True, source=f'random init (seed {seed})')


def load_models(path, *, dtype=jnp.float32, variant='human'):
    """Loads a converted model set (written by `liveportrait-jax convert`).

    Args:
      path: a model-set directory (holding metadata.json), or the converter's output root, in which
        case `variant` ('human' or 'animals') picks the set.
      dtype: compute dtype, jnp.float32 (default) or jnp.bfloat16.
    """
    from liveportrait_jax.weights.checkpoint import load_model_set  # orbax import is slow; defer
    return load_model_set(path, dtype=dtype, variant=variant)
