"""A small differentiable eye/lip openness regressor for the retargeting objectives.

MediaPipe's ratios are not differentiable, so the eye and lip retargeting losses need a stand-in:
this CNN maps an image (any size, resized to 128x128) to (eye_left, eye_right, lip) openness in
MediaPipe's ratio units. It is trained on the prepared crops with MediaPipe's ratios as labels
(configs/train_openness.py) and frozen while a retargeting head trains.
"""

import jax
import jax.numpy as jnp
from flax import nnx

INPUT = 128


class OpennessNet(nnx.Module):
    """(B, H, W, 3) in [0, 1] -> (B, 3) = eye_left, eye_right, lip openness."""

    def __init__(self, *, rngs, width=32):
        chans = [3, width, width, 2 * width, 2 * width, 4 * width]
        self.convs = nnx.List(
            [
                nnx.Conv(
                    chans[i],
                    chans[i + 1],
                    (3, 3),
                    strides=(2, 2),
                    padding=[(1, 1), (1, 1)],
                    rngs=rngs,
                )
                for i in range(len(chans) - 1)
            ]
        )
        self.head = nnx.Linear(chans[-1], 3, rngs=rngs)

    def __call__(self, images):
        x = images.astype(jnp.float32)
        if x.shape[1:3] != (INPUT, INPUT):
            x = jax.image.resize(x, (x.shape[0], INPUT, INPUT, 3), 'linear')
        for conv in self.convs:
            x = jax.nn.gelu(conv(x))
        return self.head(jnp.mean(x, axis=(1, 2)))


def augment(batch, rng):
    """Host-side augmentation of an openness batch (deterministic for a given numpy Generator).

    Mirror images (swapping the left/right eye labels), jitter brightness and contrast per image,
    and shift by up to 8 pixels: identity-independent changes, so the regressor has to look at the
    eyes and lips rather than remember faces.
    """
    import numpy as np

    crops = batch['src_crops'].astype(np.float32)
    eye = batch['src_eye'].copy()
    flip = rng.random(len(crops)) < 0.5
    crops[flip] = crops[flip, :, ::-1]
    eye[flip] = eye[flip][:, ::-1]
    gain = rng.uniform(0.7, 1.3, (len(crops), 1, 1, 1))
    bias = rng.uniform(-25, 25, (len(crops), 1, 1, 1))
    mean = crops.mean(axis=(1, 2, 3), keepdims=True)
    crops = (crops - mean) * gain + mean + bias
    for i, (dy, dx) in enumerate(rng.integers(-8, 9, (len(crops), 2))):
        crops[i] = np.roll(crops[i], (dy, dx), axis=(0, 1))
    out = dict(batch)
    out['src_crops'] = np.clip(crops, 0, 255).astype(np.uint8)
    out['src_eye'] = eye
    return out
