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


def augment(batch, rngs):
    """Host-side augmentation of an openness batch: `rngs` has one numpy Generator per row, so a
    row's augmentation depends on its generator only, not on how the batch is split into process
    shares (the trainer seeds row r of step s with (seed, s, 1, r)).

    Mirror images (swapping the left/right eye labels), jitter brightness and contrast per image,
    and shift by up to 8 pixels: identity-independent changes, so the regressor has to look at the
    eyes and lips rather than remember faces.
    """
    import numpy as np

    crops = batch['src_crops'].astype(np.float32)
    eye = batch['src_eye'].copy()
    for i, rng in enumerate(rngs):
        flip = rng.random() < 0.5
        image = crops[i, :, ::-1] if flip else crops[i]
        if flip:
            eye[i] = eye[i, ::-1]
        gain, bias = rng.uniform(0.7, 1.3), rng.uniform(-25, 25)
        mean = image.mean()
        image = (image - mean) * gain + mean + bias
        crops[i] = np.roll(image, tuple(rng.integers(-8, 9, 2)), axis=(0, 1))
    out = dict(batch)
    out['src_crops'] = np.clip(crops, 0, 255).astype(np.uint8)
    out['src_eye'] = eye
    return out
