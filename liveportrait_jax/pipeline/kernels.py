"""The animation pipeline's fused per-chunk functions, composed from the functional core.

Inputs are uint8 crops (so only bytes cross to the device) and outputs uint8 images (so only bytes
come back); each function sees fixed-size chunks (see chunks.py) and compiles once per chunk size.
Each public function takes the model set first and runs jitted over its weights
(LivePortraitModels.bind); the `_` functions are what is compiled.
"""

import functools

import jax
import jax.numpy as jnp

from liveportrait_jax.models import core
from liveportrait_jax.ops import paste
from liveportrait_jax.pipeline import motion as motion_lib

S_NETWORKS = ('stitching', 'eye', 'lip')


def _motion(nets, images_u8):
    x = core.to_model_input(images_u8, nets.input_size, nets.dtype)
    return core.motion_info(nets.motion_extractor, x)


def _feature(nets, images_u8):
    x = core.to_model_input(images_u8, nets.input_size, nets.dtype)
    return nets.appearance_feature_extractor(x)


def _render(nets, f_s, x_s, x_d):
    return core.to_uint8(
        core.warp_decode(nets.warping_module, nets.spade_generator, f_s, x_s, x_d, nets.dtype)
    )


def _render_image_source(nets, f_s, x_s, x_d):
    # One source: its feature volume (1, ...) is broadcast over the chunk's frames.
    n = x_d.shape[0]
    return _render(
        nets, jnp.broadcast_to(f_s, (n,) + f_s.shape[1:]), jnp.broadcast_to(x_s, x_d.shape), x_d
    )


def _render_video_source(nets, images_u8, x_s, x_d):
    return _render(nets, _feature(nets, images_u8), x_s, x_d)


def _pasted(crops, frames, inv, origins, mask, window, keep_crops):
    out = {'frames': paste.paste_back_batch(crops, frames, inv, origins, mask, window=window)}
    if keep_crops:
        out['crops'] = crops
    return out


def _render_paste_image(nets, f_s, x_s, frame, inv, origin, mask, x_d, *, window, keep_crops):
    # One source image, resident on the device: its frame (1, H, W, 3), crop->frame map and window
    # are the same for every frame of the chunk.
    crops = _render_image_source(nets, f_s, x_s, x_d)
    n = x_d.shape[0]
    inv = jnp.broadcast_to(inv[None], (n, *inv.shape))
    origin = jnp.broadcast_to(origin[None], (n, *origin.shape))
    return _pasted(crops, frame, inv, origin, mask, window, keep_crops)


def _render_paste_video(
    nets, mask, images_u8, x_s, x_d, frames, inv, origins, *, window, keep_crops
):
    crops = _render_video_source(nets, images_u8, x_s, x_d)
    return _pasted(crops, frames, inv, origins, mask, window, keep_crops)


def _finalize(nets, raw, x_s, multiplier, lip_before, eye_before, eye_ratio, lip_ratio, *, options):
    return motion_lib.finalize(
        raw,
        x_s,
        options=options,
        multiplier=multiplier,
        lip_delta_before=lip_before,
        eye_delta_before=eye_before,
        eye_ratio=eye_ratio,
        lip_ratio=lip_ratio,
        stitch_fn=functools.partial(core.stitch, nets.stitching),
        eye_fn=functools.partial(core.retarget, nets.eye),
        lip_fn=functools.partial(core.retarget, nets.lip),
    )


def _retarget(nets, x_s, ratio, *, name):
    return core.retarget(getattr(nets, name), x_s, ratio)


def motion(models, images_u8):
    """M on uint8 crops (B, H, W, 3) -> kp info with degrees, R (B, 3, 3) and x_s (B, K, 3)."""
    return models.bind(_motion, 'motion_extractor')(images_u8)


def feature(models, images_u8):
    """F on uint8 crops -> feature volumes (B, D, H, W, C) in the compute dtype."""
    return models.bind(_feature, 'appearance_feature_extractor')(images_u8)


def render_image_source(models, f_s, x_s, x_d):
    """W + G for one source (f_s (1, ...), x_s (1, K, 3)) and a chunk of x_d (B, K, 3) -> uint8
    (B, H, W, 3)."""
    return models.bind(_render_image_source, 'warping_module', 'spade_generator')(f_s, x_s, x_d)


def render_video_source(models, images_u8, x_s, x_d):
    """F + W + G for a chunk of source-video crops (B, ...) and x_s, x_d (B, K, 3) -> uint8."""
    return models.bind(
        _render_video_source, 'appearance_feature_extractor', 'warping_module', 'spade_generator'
    )(images_u8, x_s, x_d)


_RENDER = ('warping_module', 'spade_generator')


def render_paste_image(models, f_s, x_s, frame, inv, origin, mask, x_d, *, window, keep_crops):
    """W + G and paste-back for one source image and a chunk of x_d (B, K, 3).

    frame (1, H, W, 3) uint8, inv (2, 3) frame -> crop map (see ops.paste), origin (2,) int32 and
    `window` (static (h, w)): where the crop lands; mask (h_c, w_c) float32 crop-space mask.
    Returns {'frames': (B, H, W, 3) uint8, 'crops': (B, h_c, w_c, 3) uint8 if keep_crops}.
    """
    return models.bind(_render_paste_image, *_RENDER, static_argnames=('window', 'keep_crops'))(
        f_s, x_s, frame, inv, origin, mask, x_d, window=window, keep_crops=keep_crops
    )


def render_paste_video(
    models, mask, images_u8, x_s, x_d, frames, inv, origins, *, window, keep_crops
):
    """F + W + G and paste-back for a chunk of source-video frames: crops (B, 256, 256, 3),
    x_s, x_d (B, K, 3), frames (B, H, W, 3) uint8, inv (B, 2, 3), origins (B, 2); as above."""
    return models.bind(
        _render_paste_video,
        'appearance_feature_extractor',
        *_RENDER,
        static_argnames=('window', 'keep_crops'),
    )(mask, images_u8, x_s, x_d, frames, inv, origins, window=window, keep_crops=keep_crops)


@functools.partial(
    jax.jit, static_argnames=('relative', 'region', 'source_is_video', 'driving_is_video')
)
def compose_raw(
    src, drv, smoothed, lip_array, *, relative, region, source_is_video, driving_is_video
):
    """motion.compose_raw, jitted (one compilation per input kind and frame count)."""
    return motion_lib.compose_raw(
        src,
        drv,
        relative=relative,
        region=region,
        source_is_video=source_is_video,
        driving_is_video=driving_is_video,
        lip_array=lip_array,
        smoothed=smoothed,
    )


def finalize(
    models,
    raw,
    x_s,
    options,
    multiplier=None,
    lip_before=None,
    eye_before=None,
    eye_ratio=None,
    lip_ratio=None,
):
    """motion.finalize with the S networks, jitted; `options` is static (hashable)."""
    return models.bind(_finalize, *S_NETWORKS, static_argnames=('options',))(
        raw, x_s, multiplier, lip_before, eye_before, eye_ratio, lip_ratio, options=options
    )


def retarget(models, name, x_s, ratio):
    """Eye ('eye', ratio (B, 3)) or lip ('lip', ratio (B, 2)) offsets (B, K, 3)."""
    return models.bind(_retarget, name, static_argnames=('name',))(x_s, ratio, name=name)
