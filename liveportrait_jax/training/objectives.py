"""Losses of the paper's second training stage (arXiv 2407.03168, section 3.2), for one head.

All images are channels-last in [0, 1] at the generator's output size; masks come from the prepared
region masks (face, eyes, lips) resized to that size.

- stitching: with the stitched driving keypoints x_d' = x_d + S(x_s, x_d), the generated image must
  keep the source crop outside the face (the shoulders and background the stitching protects),
  keep the un-stitched animation inside it, and the offsets must stay small:
      L = |(1 - M_face)(I_st - I_s)| + |M_face (I_st - I_d)| + w_reg |S(x_s, x_d)|
- eye (lip) retargeting: x_s' = x_s + R(x_s, [c_s, c_target]) must render eyes (lips) whose
  openness (the frozen OpennessNet) is c_target, leave the rest of the image as the reconstruction
  G(W(f_s, x_s, x_s)), and keep the offsets small:
      L = w_open |open(I') - c_target| + |(1 - M_region)(I' - I_rec)| + w_reg |R(...)|
"""

import jax
import jax.numpy as jnp
from flax import nnx

from liveportrait_jax.models import core
from liveportrait_jax.ops.keypoints import matmul
from liveportrait_jax.ops.stitching import apply_stitching_delta
from liveportrait_jax.training.data import EYES, FACE, LIPS


def _resize(x, size):
    return jax.image.resize(x, (x.shape[0], size, size, x.shape[-1]), 'linear')


def driving_keypoints(batch):
    """The source identity in the driving frame's pose and expression: (B, K, 3)."""
    kp = batch['src_kp']
    x = matmul(kp, batch['drv_R']) + batch['drv_exp']
    x = x * batch['drv_scale'][:, :, None]
    return x.at[:, :, :2].add(batch['drv_t'][:, None, :2])


def render(frozen, graphdefs, f_s, x_s, x_d, dtype):
    w = nnx.merge(graphdefs['warping_module'], frozen['warping_module'])
    g = nnx.merge(graphdefs['spade_generator'], frozen['spade_generator'])
    return core.warp_decode(w, g, f_s, x_s, x_d, dtype)


def _source(frozen, graphdefs, batch, input_size, dtype):
    crops = core.to_model_input(batch['src_crops'], input_size, dtype)
    f = nnx.merge(graphdefs['appearance_feature_extractor'], frozen['appearance_feature_extractor'])
    return crops, f(crops)


def stitching_loss(head, frozen, graphdefs, batch, cfg, input_size, dtype=jnp.float32):
    crops, f_s = _source(frozen, graphdefs, batch, input_size, dtype)
    x_s, x_d = batch['src_x_s'], driving_keypoints(batch)
    delta = core.stitching_delta(head, x_s, x_d)
    image = render(frozen, graphdefs, f_s, x_s, apply_stitching_delta(x_d, delta), dtype)
    plain = jax.lax.stop_gradient(render(frozen, graphdefs, f_s, x_s, x_d, dtype))
    size = image.shape[1]
    src = _resize(crops.astype(jnp.float32), size)
    mask = _resize(batch['src_masks'][:, FACE, :, :, None].astype(jnp.float32), size)
    outside = jnp.mean(jnp.abs((1 - mask) * (image - src)))
    inside = jnp.mean(jnp.abs(mask * (image - plain)))
    reg = jnp.mean(jnp.abs(delta))
    loss = outside + inside + cfg.w_reg * reg
    return loss, {
        'outside_face': outside,
        'inside_face': inside,
        'offset_l1': reg,
        'sample': image[0],
    }


def retargeting_loss(
    kind, head, frozen, graphdefs, openness, batch, cfg, input_size, dtype=jnp.float32
):
    """kind: 'eye' or 'lip'. `openness` is the frozen OpennessNet."""
    _, f_s = _source(frozen, graphdefs, batch, input_size, dtype)
    x_s = batch['src_x_s']
    if kind == 'eye':
        cond = jnp.concatenate([batch['src_eye'], batch['target_eye']], axis=1)  # (B, 3)
        target, region = batch['target_eye'], EYES
    else:
        cond = jnp.concatenate([batch['src_lip'], batch['target_lip']], axis=1)  # (B, 2)
        target, region = batch['target_lip'], LIPS
    delta = core.retarget(head, x_s, cond)
    image = render(frozen, graphdefs, f_s, x_s, x_s + delta, dtype)
    recon = jax.lax.stop_gradient(render(frozen, graphdefs, f_s, x_s, x_s, dtype))
    pred = openness(image)
    pred = pred[:, :2] if kind == 'eye' else pred[:, 2:]
    open_err = jnp.mean(jnp.abs(pred - target))
    size = image.shape[1]
    mask = _resize(batch['src_masks'][:, region, :, :, None].astype(jnp.float32), size)
    keep = jnp.mean(jnp.abs((1 - mask) * (image - recon)))
    reg = jnp.mean(jnp.abs(delta))
    loss = cfg.w_open * open_err + keep + cfg.w_reg * reg
    return loss, {
        'openness_l1': open_err,
        'outside_region': keep,
        'offset_l1': reg,
        'sample': image[0],
    }


def openness_loss(net, batch):
    """L1 between the regressor and MediaPipe's ratios on the prepared crops."""
    images = batch['src_crops'].astype(jnp.float32) / 255.0
    labels = jnp.concatenate([batch['src_eye'], batch['src_lip']], axis=1)
    pred = net(images)
    err = jnp.abs(pred - labels)
    return jnp.mean(err), {'eye_l1': jnp.mean(err[:, :2]), 'lip_l1': jnp.mean(err[:, 2])}
