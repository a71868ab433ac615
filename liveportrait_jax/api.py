"""The public model API: `load_models`, `init_random_models` and the jitted `LivePortraitModels`.

Layouts are channels-last everywhere: images (B, H, W, 3) float in [0, 1] (or uint8); feature
volumes (B, D, H, W, C); keypoints (B, K, 3). Every method is jitted and batched over the leading
axis; each input shape compiles once. The computations themselves are the functional core's
(models/core.py); this class only binds them to one model set's weights.
"""

import types

import jax
import jax.numpy as jnp
from flax import nnx

from liveportrait_jax.models import core
from liveportrait_jax.models.model_set import NETWORKS, build_networks, resolve_config


class LivePortraitModels:
    """The networks F, M, W, G and S of one model set, with jitted, batched entry points.

    Attributes:
      config: the ml_collections model config.
      dtype: compute dtype (float32, or bfloat16 / float16 for the convolutions; keypoint math,
        sampling coordinates, softmaxes and the S MLPs stay float32).
      random_weights: True when the weights are random (tests, demo mode), never real.
      networks: {name: nnx.Module}; `states` holds their nnx.State and `graphdefs` their structure.
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
        self._bound = {}

    def __repr__(self):
        kind = 'RANDOM weights' if self.random_weights else f'weights from {self.source}'
        return (
            f'LivePortraitModels(config={self.config.get("name", "?")!r}, '
            f'dtype={self.dtype.name}, {kind})'
        )

    def replace_networks(self, networks, source=None):
        """A new model set with some networks replaced (e.g. a fine-tuned S), same config."""
        return LivePortraitModels(
            {**self.networks, **networks},
            self.config,
            dtype=self.dtype,
            random_weights=self.random_weights,
            source=source or self.source,
        )

    def bind(self, fn, *names, static_argnames=()):
        """`fn(nets, *args, **static)` jitted over this set's weights; returns `call(*args, **static)`.

        `nets` is a namespace holding the merged modules `names` (as attributes) plus `dtype` and
        `input_size`. One compiled function per (fn, names) and input shapes, cached on this
        object, so `fn` must be a module-level function, not a fresh lambda per call.
        """
        key = (fn, names, tuple(static_argnames))
        call = self._bound.get(key)
        if call is None:
            graphdefs, dtype, size = self.graphdefs, self.dtype, self.input_size

            def run(states, *args, **static):
                nets = types.SimpleNamespace(
                    dtype=dtype,
                    input_size=size,
                    **{n: nnx.merge(graphdefs[n], s) for n, s in states.items()},
                )
                return fn(nets, *args, **static)

            run = jax.jit(run, static_argnames=tuple(static_argnames))

            def call(*args, **static):
                return run({n: self.states[n] for n in names}, *args, **static)

            self._bound[key] = call
        return call

    def extract_feature_3d(self, images):
        """F: images (B, H, W, 3) in [0, 1] -> appearance feature volume (B, D, H', W', C) float32."""
        return self.bind(_feature, 'appearance_feature_extractor')(_images(images))

    def motion_heads(self, images):
        """M: images -> raw heads: pitch/yaw/roll (B, 66) logits, t (B, 3), exp, kp (B, 63),
        scale (B, 1)."""
        return self.bind(_motion_heads, 'motion_extractor')(_images(images))

    def get_kp_info(self, images):
        """M + refinement: dict pitch, yaw, roll (B, 1) degrees; t (B, 3); exp, kp (B, 21, 3);
        scale (B, 1)."""
        return self.bind(_kp_info, 'motion_extractor')(_images(images))

    def stitching(self, x_s, x_d):
        """S: source and driving keypoints (B, K, 3) -> stitched driving keypoints (B, K, 3)."""
        return self.bind(_stitch, 'stitching')(_f32(x_s), _f32(x_d))

    def stitching_delta(self, x_s, x_d):
        """The raw stitching output (B, 3K + 2) for (x_s, x_d)."""
        return self.bind(_stitching_delta, 'stitching')(_f32(x_s), _f32(x_d))

    def retarget_eye(self, x_s, eye_ratio):
        """R_eyes: x_s (B, K, 3), eye_ratio (B, 3) = [c_s_eye_left, c_s_eye_right, c_d_eye] ->
        keypoint offsets (B, K, 3)."""
        return self.bind(_retarget_eye, 'eye')(_f32(x_s), _f32(eye_ratio))

    def retarget_lip(self, x_s, lip_ratio):
        """R_lip: x_s (B, K, 3), lip_ratio (B, 2) = [c_s_lip, c_d_lip] -> offsets (B, K, 3)."""
        return self.bind(_retarget_lip, 'lip')(_f32(x_s), _f32(lip_ratio))

    def warp(self, f_s, x_s, x_d):
        """W: f_s (B, D, H, W, C), x_s, x_d (B, K, 3) -> dict out (B, 64, 64, 256) warped feature,
        occlusion_map (B, 64, 64, 1), deformation (B, D, H, W, 3), mask (B, D, H, W, K+1)."""
        return self.bind(_warp, 'warping_module')(jnp.asarray(f_s), _f32(x_s), _f32(x_d))

    def decode(self, feature):
        """G: warped feature (B, 64, 64, 256) -> image (B, 512, 512, 3) in [0, 1]."""
        return self.bind(_decode, 'spade_generator')(jnp.asarray(feature))

    def warp_decode(self, f_s, x_s, x_d):
        """W + G: f_s (B, D, H, W, C), x_s, x_d (B, K, 3) -> dict
        out (B, 512, 512, 3) in [0, 1]; and W's intermediates occlusion_map (B, 64, 64, 1),
        deformation (B, D, H, W, 3), mask (B, D, H, W, K+1), warped_feature (B, 64, 64, 256)
        (released config sizes). W and G compile apart, so `decode` shares G's program."""
        ret = self.warp(f_s, x_s, x_d)
        ret['warped_feature'] = ret.pop('out')
        ret['out'] = self.decode(ret['warped_feature'])
        return ret


def _images(images):
    images = jnp.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f'images must be (B, H, W, 3) floats in [0, 1], got {images.shape}')
    return images


def _f32(x):
    return jnp.asarray(x, jnp.float32)


# The facade's bound functions (module level, so that `bind` caches one program per function).
def _feature(nets, images):
    x = core.to_model_input(images, nets.input_size, nets.dtype)
    return nets.appearance_feature_extractor(x).astype(jnp.float32)


def _motion_heads(nets, images):
    return nets.motion_extractor(core.to_model_input(images, nets.input_size, nets.dtype))


def _kp_info(nets, images):
    return core.kp_info(
        nets.motion_extractor, core.to_model_input(images, nets.input_size, nets.dtype)
    )


def _stitch(nets, x_s, x_d):
    return core.stitch(nets.stitching, x_s, x_d)


def _stitching_delta(nets, x_s, x_d):
    return core.stitching_delta(nets.stitching, x_s, x_d)


def _retarget_eye(nets, x_s, ratio):
    return core.retarget(nets.eye, x_s, ratio)


def _retarget_lip(nets, x_s, ratio):
    return core.retarget(nets.lip, x_s, ratio)


def _warp(nets, f_s, x_s, x_d):
    ret = core.warp(nets.warping_module, f_s, x_s, x_d, nets.dtype)
    return {
        'out': ret['out'].astype(jnp.float32),
        'occlusion_map': ret['occlusion_map'],
        'deformation': ret['deformation'],
        'mask': ret['mask'],
    }


def _decode(nets, feature):
    return core.decode(nets.spade_generator, feature, nets.dtype)


def init_random_models(config='full', seed=0, *, dtype=jnp.float32):
    """A LivePortraitModels with RANDOM weights for tests and demos (see
    models.model_set.build_networks). Its outputs mean nothing; `random_weights` is True so that
    callers label them as such (liveportrait_jax.demo)."""
    config = resolve_config(config)
    return LivePortraitModels(
        build_networks(config, seed=seed, dtype=dtype),
        config,
        dtype=dtype,
        random_weights=True,
        source=f'random init (seed {seed})',
    )


def load_models(path, *, dtype=jnp.float32, variant='human'):
    """Loads a converted model set (written by `liveportrait-jax convert`).

    Args:
      path: a model-set directory (holding metadata.json), or the converter's output root, in which
        case `variant` ('human' or 'animals') picks the set.
      dtype: compute dtype, jnp.float32 (default), jnp.bfloat16 or jnp.float16.
    """
    from liveportrait_jax.weights.checkpoint import load_model_set  # orbax import is slow; defer

    networks, config, directory = load_model_set(path, dtype=dtype, variant=variant)
    return LivePortraitModels(networks, config, dtype=dtype, source=directory)


def load_torch_models(files, config='full', *, dtype=jnp.float32):
    """The reference `.pth` files loaded directly (no conversion step): a directory holding the
    five files, or {network name: path}."""
    from liveportrait_jax.weights.checkpoint import load_torch_networks

    config = resolve_config(config)
    networks = load_torch_networks(files, config, dtype=dtype)
    return LivePortraitModels(networks, config, dtype=dtype, source=str(files))


def with_stitching_weights(models, path):
    """A copy of `models` whose stitching / eye / lip MLPs come from a stitching `.pth` file in
    the reference's layout (e.g. a head fine-tuned and exported here), loaded strictly."""
    from liveportrait_jax.weights.checkpoint import read_stitching_networks

    return models.replace_networks(
        read_stitching_networks(path, models.networks), source=f'{models.source} + S from {path}'
    )
