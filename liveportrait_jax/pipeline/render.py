"""Stage "render": the second pass. F (video sources), W + G and paste-back on the device.

The animated crop is pasted into the source frame inside the same jitted function that renders it
(ops.paste: cv2.warpAffine's arithmetic, the project's feathered mask), so only finished uint8
frames come back to the host. An image source's frame, feature volume and paste window are put on
the device once; a video source's frames are decoded again, re-cropped with the first pass's
matrices and uploaded chunk by chunk.
"""

import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np

from liveportrait_jax import faces
from liveportrait_jax.ops import paste
from liveportrait_jax.pipeline import kernels
from liveportrait_jax.pipeline.inputs import iter_source_again, resize_to_limit
from liveportrait_jax.pipeline.outputs import at_size, progress_bar
from liveportrait_jax.pipeline.read import prefetch


def pastes_back(options, source):
    """As the reference: paste-back needs a crop and stitching (without stitching the face does
    not line up with the source around the crop's border); otherwise the crop is the output."""
    return (
        options.flag_pasteback
        and options.flag_do_crop
        and options.flag_stitching
        and source.M_c2o is not None
    )


def output_size(models, num_kp):
    """Side of the networks' animated crop (512 for the released weights), without computing it."""
    img = jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.uint8)
    kp = jax.ShapeDtypeStruct((1, num_kp, 3), jnp.float32)
    f_s = jax.eval_shape(lambda x: kernels.feature(models, x), img)
    out = jax.eval_shape(lambda f, a, b: kernels.render_image_source(models, f, a, b), f_s, kp, kp)
    return int(out.shape[1])


def driving_crops(plan, panels):
    """The driving 256 crops of the comparison panel, one per output frame (None without)."""
    drv = plan.driving
    if panels and drv is not None and drv.media.kind != 'template':
        if drv.crops is not None:  # kept by the first pass (plan_animation)
            return drv.crops.frames(plan.n_frames)
        if not drv.is_video:
            return itertools.repeat(drv.crop_256)
    return itertools.repeat(None)


class Renderer:
    """Renders chunks of the plan: `rows()` feeds `chunker.stream(self.fn, ...)`."""

    def __init__(self, models, plan, options, chunker, *, keep_crops):
        self.models, self.plan, self.options, self.chunker = models, plan, options, chunker
        src = plan.source
        self.paste = pastes_back(options, src)
        self.keep_crops = keep_crops or not self.paste
        size = output_size(models, plan.x_d.shape[1])
        if self.paste:
            # The crop -> frame maps are for a dsize crop; the networks' crop may be smaller.
            M_c2o = faces.crop.rescale_c2o(src.M_c2o, options.dsize, size)
            self.inv = paste.inverse_affine(M_c2o)
            self.origins, self.window = paste.paste_window(src.frame_hw, M_c2o, size)
            self.mask = jax.device_put(faces.make_paste_back_mask(size))
        if not src.is_video:
            self.f_s = kernels.feature(self.models, src.crop_256[None])
            self.x_s = jax.device_put(plan.x_s[:1])
            if self.paste:
                self.frame = jax.device_put(src.image[None])
                self.inv0 = jax.device_put(self.inv[0])
                self.origin0 = jax.device_put(self.origins[0])

    def fn(self, *arrays):
        m, w, k = self.models, getattr(self, 'window', None), self.keep_crops
        if not self.plan.source.is_video:
            (x_d,) = arrays
            if self.paste:
                return kernels.render_paste_image(
                    m, self.f_s, self.x_s, self.frame, self.inv0, self.origin0, self.mask, x_d,
                    window=w, keep_crops=k,
                )  # fmt: skip
            return {'crops': kernels.render_image_source(m, self.f_s, self.x_s, x_d)}
        if self.paste:
            return kernels.render_paste_video(m, self.mask, *arrays, window=w, keep_crops=k)
        crops, x_s, x_d = arrays
        return {'crops': kernels.render_video_source(m, crops, x_s, x_d)}

    def rows(self, *, panels):
        """Per output frame: the device inputs, then the host payload (driving and source 256
        crops for the comparison panel when `panels`, else None)."""
        plan, options = self.plan, self.options
        src, n = plan.source, plan.n_frames
        drv_crops = driving_crops(plan, panels)
        if not src.is_video:
            for i, d in zip(range(n), drv_crops):
                yield plan.x_d[i], d, src.crop_256 if panels else None
            return
        again = prefetch(iter_source_again(src.media, options, src.M_o2c, n), self.chunker.chunk)
        for i, (frame, crop), d in zip(range(n), again, drv_crops):
            if self.paste:
                row = (crop, plan.x_s[i], plan.x_d[i], frame, self.inv[i], self.origins[i])
            else:
                row = (crop, plan.x_s[i], plan.x_d[i])
            yield (*row, d, crop if panels else None)

    @property
    def n_device(self):
        if not self.plan.source.is_video:
            return 1
        return 6 if self.paste else 3

    def items(self, out, payload, valid):
        """The finished frames of one chunk, as Outputs items: 'frame' (H, W, 3) finished,
        'crop' the animated crop at dsize and 'crop_native' at the networks' size (when kept),
        'driving' / 'source' 256 crops for the comparison panel (or None)."""
        d = self.options.dsize
        crops = out.get('crops')
        frames = out['frames'] if self.paste else [at_size(c, d) for c in crops]
        drv, src = payload
        return [
            {
                'frame': frames[j],
                'crop': None if crops is None else at_size(crops[j], d),
                'crop_native': None if crops is None else crops[j],
                'driving': drv[j],
                'source': src[j],
            }
            for j in range(valid)
        ]


class FacesRenderer(Renderer):
    """Several faces of one source (plan.FacesPlan): faces x frames on the batch axis of the same
    chunks, each face pasted back with its own mask, overlaps shared (ops.paste.paste_faces_batch).
    Items as Renderer's; 'crop' is the first face's."""

    def __init__(self, models, plan, options, chunker, *, keep_crops):
        self.models, self.plan, self.options, self.chunker = models, plan, options, chunker
        plans, src = plan.plans, plan.source
        if not pastes_back(options, src):
            raise ValueError(
                'several faces are pasted back into the source: they need flag_pasteback, '
                'flag_do_crop and flag_stitching on'
            )
        self.paste, self.keep_crops = True, keep_crops
        size = output_size(models, plan.x_d.shape[1])
        rows = plan.n_frames if src.is_video else 1
        M_c2o = np.stack(
            [faces.crop.rescale_c2o(p.source.M_c2o[:rows], options.dsize, size) for p in plans],
            axis=1,
        ).reshape(-1, 3, 3)  # (rows * F, 3, 3), frame-major
        n_faces = len(plans)
        inv = paste.inverse_affine(M_c2o)
        origins, self.window = paste.paste_window(src.frame_hw, M_c2o, size)
        self.inv = inv.reshape((rows, n_faces) + inv.shape[1:])
        self.origins = origins.reshape(rows, n_faces, 2)
        self.mask = jax.device_put(faces.make_paste_back_mask(size))
        self.priority = jax.device_put(paste.face_priority(size))
        if not src.is_video:
            crops = np.stack([p.source.crop_256 for p in plans])
            self.f_s = kernels.feature(models, crops)
            self.x_s = jax.device_put(np.concatenate([p.x_s[:1] for p in plans]))
            self.frame = jax.device_put(src.image[None])
            self.inv0 = jax.device_put(self.inv[0])
            self.origin0 = jax.device_put(self.origins[0])

    def fn(self, *arrays):
        m, w, k = self.models, self.window, self.keep_crops
        if not self.plan.source.is_video:
            (x_d,) = arrays
            return kernels.render_paste_faces_image(
                m, self.f_s, self.x_s, self.frame, self.inv0, self.origin0, self.mask,
                self.priority, x_d, window=w, keep_crops=k,
            )  # fmt: skip
        return kernels.render_paste_faces_video(
            m, self.mask, self.priority, *arrays, window=w, keep_crops=k
        )

    def rows(self, *, panels):
        plan, options = self.plan, self.options
        plans, src, n = plan.plans, plan.source, plan.n_frames
        drv_crops = driving_crops(plan, panels)
        if not src.is_video:
            for i, d in zip(range(n), drv_crops):
                yield np.stack([p.x_d[i] for p in plans]), d, src.crop_256 if panels else None
            return
        frames = (
            resize_to_limit(f, options.source_max_dim, options.source_division)
            for f in src.media.frames(n)
        )
        for i, frame, d in zip(range(n), prefetch(frames, self.chunker.chunk), drv_crops):
            crops = np.stack(
                [
                    faces.crop.crop_with_matrix(frame, p.source.M_o2c[i], options.dsize)
                    for p in plans
                ]
            )
            yield (
                crops,
                np.stack([p.x_s[i] for p in plans]),
                np.stack([p.x_d[i] for p in plans]),
                frame,
                self.inv[i],
                self.origins[i],
                np.array([p.source.present[i] for p in plans], np.float32),
                d,
                crops[0] if panels else None,
            )

    @property
    def n_device(self):
        return 1 if not self.plan.source.is_video else 7


def render_stream(models, plan, options, chunker, *, panels, keep_crops=False):
    """Yields (start, items) chunk by chunk (see Renderer.items); `plan` is a plan.Plan, or a
    plan.FacesPlan for several faces."""
    kind = FacesRenderer if hasattr(plan, 'plans') else Renderer
    r = kind(models, plan, options, chunker, keep_crops=keep_crops or panels)
    rows = r.rows(panels=panels)
    try:
        for start, valid, out, payload in chunker.stream(r.fn, chunker.batches(rows, r.n_device)):
            yield start, r.items(out, payload, valid)
    finally:
        rows.close()


def render_to(models, plan, options, chunker, outputs, stages, *, progress, desc, keep_crops=False):
    """The render pass into `outputs` (closed at the end, aborted on any exception, Ctrl-C and
    SIGTERM included). Returns the animated crops at the networks' size when `keep_crops`."""
    kept = [] if keep_crops else None
    update, close = progress_bar(plan.n_frames, desc, progress)
    t = time.perf_counter()
    try:
        panels = 'concat' in outputs.sinks
        stream = render_stream(models, plan, options, chunker, panels=panels, keep_crops=keep_crops)
        for _, items in stream:
            outputs.submit(items)
            if kept is not None:
                kept.extend(it['crop_native'] for it in items)
            update(len(items))
        stages.add('render pass (device, overlapped with writing)', time.perf_counter() - t)
        t = time.perf_counter()
        outputs.close()
        stages.add('write (finishing the encoders)', time.perf_counter() - t)
    except BaseException:
        outputs.abort()
        raise
    finally:
        close()
    return kept
