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


def _render_faces(nets, f_s, x_s, x_d):
    # Faces x frames on the batch axis: f_s, x_s, x_d (B, F, ...) -> crops (B, F, h, w, 3).
    b, f = x_d.shape[:2]
    rows = lambda a: a.reshape((b * f,) + a.shape[2:])  # noqa: E731
    crops = _render(nets, rows(f_s), rows(x_s), rows(x_d))
    return crops.reshape((b, f) + crops.shape[1:])


def _pasted_faces(crops, frames, inv, origins, present, mask, priority, window, keep_crops):
    out = {
        'frames': paste.paste_faces_batch(
            crops, frames, inv, origins, present, mask, priority, window=window
        )
    }
    if keep_crops:
        out['crops'] = crops[:, 0]  # the first face's crops (the crops output shows one face)
    return out


def _render_paste_faces_image(
    nets, f_s, x_s, frame, inv, origins, mask, priority, x_d, *, window, keep_crops
):
    # One source image with F faces, resident on the device: f_s (F, ...), x_s (F, K, 3),
    # inv (F, 2, 3, 4), origins (F, 2); x_d (B, F, K, 3).
    b = x_d.shape[0]
    per_frame = lambda a: jnp.broadcast_to(a[None], (b,) + a.shape)  # noqa: E731
    crops = _render_faces(nets, per_frame(f_s), per_frame(x_s), x_d)
    present = jnp.ones(x_d.shape[:2], jnp.float32)
    return _pasted_faces(
        crops, frame, per_frame(inv), per_frame(origins), present, mask, priority, window,
        keep_crops,
    )  # fmt: skip


def _render_paste_faces_video(
    nets, mask, priority, images_u8, x_s, x_d, frames, inv, origins, present, *, window,
    keep_crops,
):  # fmt: skip
    # A source video with F faces: images_u8 (B, F, 256, 256, 3), frames (B, H, W, 3), present
    # (B, F), the rest (B, F, ...).
    b, f = x_d.shape[:2]
    feats = _feature(nets, images_u8.reshape((b * f,) + images_u8.shape[2:]))
    crops = _render_faces(nets, feats.reshape((b, f) + feats.shape[1:]), x_s, x_d)
    return _pasted_faces(crops, frames, inv, origins, present, mask, priority, window, keep_crops)


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


def render_paste_faces_image(
    models, f_s, x_s, frame, inv, origins, mask, priority, x_d, *, window, keep_crops
):
    """W + G and paste-back of F faces of one source image for a chunk of x_d (B, F, K, 3):
    f_s (F, D, H, W, C), x_s (F, K, 3), frame (1, H, W, 3) uint8, inv (F, 2, 3, 4), origins
    (F, 2), mask and priority (h_c, w_c) (ops.paste.paste_faces_batch). Returns {'frames':
    (B, H, W, 3) uint8, 'crops': the first face's (B, h_c, w_c, 3) if keep_crops}."""
    return models.bind(
        _render_paste_faces_image, *_RENDER, static_argnames=('window', 'keep_crops')
    )(f_s, x_s, frame, inv, origins, mask, priority, x_d, window=window, keep_crops=keep_crops)


def render_paste_faces_video(
    models, mask, priority, images_u8, x_s, x_d, frames, inv, origins, present, *, window,
    keep_crops,
):  # fmt: skip
    """F + W + G and paste-back of F faces of a chunk of source-video frames: images_u8
    (B, F, 256, 256, 3), x_s, x_d (B, F, K, 3), frames (B, H, W, 3), inv (B, F, 2, 3, 4), origins
    (B, F, 2), present (B, F) float32 (0: the face is not in that frame, nothing is pasted)."""
    return models.bind(
        _render_paste_faces_video,
        'appearance_feature_extractor',
        *_RENDER,
        static_argnames=('window', 'keep_crops'),
    )(
        mask, priority, images_u8, x_s, x_d, frames, inv, origins, present, window=window,
        keep_crops=keep_crops,
    )  # fmt: skip


@functools.partial(
    jax.jit, static_argnames=('relative', 'region', 'source_is_video', 'driving_is_video')
)
def compose_raw(
    src, drv, smoothed, lip_array, edits=None, *, relative, region, source_is_video,
    driving_is_video,
):  # fmt: skip
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
        edits=edits,
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
