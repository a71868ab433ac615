"""The jitted per-chunk functions of the animation pipeline, built once per model set.

Inputs are uint8 crops (so only bytes cross to the device) and outputs uint8 images (so only bytes
come back); each function sees fixed-size chunks (see chunks.py) and compiles once per chunk size.
"""

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from liveportrait_jax.pipeline import motion as motion_lib

from liveportrait_jax.api import refine_kp_info
from liveportrait_jax.ops.keypoints import get_rotation_matrix, transform_keypoints
from liveportrait_jax.ops.stitching import apply_stitching_delta, concat_feat


def to_model_input(images_u8, size, dtype):
    """(B, H, W, 3) uint8 -> (B, size, size, 3) in [0, 1] of `dtype`."""
    x = images_u8.astype(jnp.float32) / 255.0
    if x.shape[1:3] != (size, size):
        x = jax.image.resize(x, (x.shape[0], size, size, 3), 'linear')
    return jnp.clip(x, 0.0, 1.0).astype(dtype)


def to_uint8(images):
    """[0, 1] floats -> uint8 the way the reference does it (clip, * 255, truncate)."""
    return (jnp.clip(images, 0.0, 1.0) * 255.0).astype(jnp.uint8)


class Kernels:
    """Jitted functions over one LivePortraitModels' networks."""

    def __init__(self, models):
        self.models = models
        g, size, dtype = models.graphdefs, models.input_size, models.dtype
        self._g, self._size, self._dtype = g, size, dtype

        @jax.jit
        def motion(state_m, images_u8):
            heads = nnx.merge(g['motion_extractor'], state_m)(to_model_input(images_u8, size, dtype))
            info = refine_kp_info(heads)
            info['R'] = get_rotation_matrix(info['pitch'], info['yaw'], info['roll'])
            info['x_s'] = transform_keypoints(info, rotation=info['R'])
            return info

        @jax.jit
        def feature(state_f, images_u8):
            f = nnx.merge(g['appearance_feature_extractor'], state_f)
            return f(to_model_input(images_u8, size, dtype))

        def warp_decode(state_w, state_g, f_s, x_s, x_d):
            ret = nnx.merge(g['warping_module'], state_w)(f_s.astype(dtype), x_d, x_s)
            return to_uint8(nnx.merge(g['spade_generator'], state_g)(ret['out']))

        @jax.jit
        def render_image_source(state_w, state_g, f_s, x_s, x_d):
            # One source: its feature volume (1, ...) is broadcast over the chunk's frames.
            n = x_d.shape[0]
            return warp_decode(state_w, state_g, jnp.broadcast_to(f_s, (n,) + f_s.shape[1:]),
                               jnp.broadcast_to(x_s, x_d.shape), x_d)

        @jax.jit
        def render_video_source(state_f, state_w, state_g, images_u8, x_s, x_d):
            f_s = nnx.merge(g['appearance_feature_extractor'], state_f)(
                to_model_input(images_u8, size, dtype))
            return warp_decode(state_w, state_g, f_s, x_s, x_d)

        def s_fns(states):
            mlps = {n: nnx.merge(g[n], states[n]) for n in ('stitching', 'eye', 'lip')}
            stitch = lambda x_s, x_d: apply_stitching_delta(
                x_d, mlps['stitching'](concat_feat(x_s, x_d)))
            eye = lambda x_s, r: mlps['eye'](concat_feat(x_s, r)).reshape(x_s.shape)
            lip = lambda x_s, r: mlps['lip'](concat_feat(x_s, r)).reshape(x_s.shape)
            return stitch, eye, lip

        @functools.partial(jax.jit, static_argnames=('relative', 'region', 'source_is_video',
                                                     'driving_is_video'))
        def compose_raw(src, drv, smoothed, lip_array, *, relative, region, source_is_video,
                        driving_is_video):
            return motion_lib.compose_raw(src, drv, relative=relative, region=region,
                                          source_is_video=source_is_video,
                                          driving_is_video=driving_is_video, lip_array=lip_array,
                                          smoothed=smoothed)

        @functools.partial(jax.jit, static_argnames=('options',))
        def finalize(states, raw, x_s, multiplier, lip_before, eye_before, eye_ratio, lip_ratio,
                     *, options):
            stitch, eye, lip = s_fns(states)
            return motion_lib.finalize(raw, x_s, stitch_fn=stitch, eye_fn=eye, lip_fn=lip,
                                       options=options, multiplier=multiplier,
                                       lip_delta_before=lip_before, eye_delta_before=eye_before,
                                       eye_ratio=eye_ratio, lip_ratio=lip_ratio)

        @functools.partial(jax.jit, static_argnames=('name',))
        def retarget(states, x_s, ratio, *, name):
            _, eye, lip = s_fns(states)
            return (eye if name == 'eye' else lip)(x_s, ratio)

        self._compose_raw, self._finalize, self._retarget = compose_raw, finalize, retarget
        self._motion, self._feature = motion, feature
        self._render_image, self._render_video = render_image_source, render_video_source

    @property
    def states(self):
        return self.models.states

    def motion(self, images_u8):
        return self._motion(self.states['motion_extractor'], images_u8)

    def feature(self, images_u8):
        return self._feature(self.states['appearance_feature_extractor'], images_u8)

    def render_image_source(self, f_s, x_s, x_d):
        s = self.states
        return self._render_image(s['warping_module'], s['spade_generator'], f_s, x_s, x_d)

    def render_video_source(self, images_u8, x_s, x_d):
        s = self.states
        return self._render_video(s['appearance_feature_extractor'], s['warping_module'],
                                  s['spade_generator'], images_u8, x_s, x_d)

    def _s_states(self):
        return {n: self.states[n] for n in ('stitching', 'eye', 'lip')}

    def compose_raw(self, src, drv, smoothed, lip_array, **static):
        """motion.compose_raw, jitted (one compilation per input kind and frame count)."""
        return self._compose_raw(src, drv, smoothed, lip_array, **static)

    def finalize(self, raw, x_s, options, multiplier=None, lip_before=None, eye_before=None,
                 eye_ratio=None, lip_ratio=None):
        """motion.finalize with the S networks, jitted; `options` is static (hashable)."""
        return self._finalize(self._s_states(), raw, x_s, multiplier, lip_before, eye_before,
                              eye_ratio, lip_ratio, options=options)

    def retarget(self, name, x_s, ratio):
        """Eye ('eye', ratio (B, 3)) or lip ('lip', ratio (B, 2)) offsets (B, K, 3)."""
        return self._retarget(self._s_states(), x_s, ratio, name=name)


def kernels_for(models):
    """The Kernels of `models`, created on first use and kept on the object."""
    k = getattr(models, '_pipeline_kernels', None)
    if k is None:
        k = Kernels(models)
        models._pipeline_kernels = k
    return k
