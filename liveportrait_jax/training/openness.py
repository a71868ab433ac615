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
        self.convs = nnx.List([nnx.Conv(chans[i], chans[i + 1], (3, 3), strides=(2, 2),
                                        padding=[(1, 1), (1, 1)], rngs=rngs)
                               for i in range(len(chans) - 1)])
        self.head = nnx.Linear(chans[-1], 3, rngs=rngs)

    def __call__(self, images):
        x = images.astype(jnp.float32)
        if x.shape[1:3] != (INPUT, INPUT):
            x = jax.image.resize(x, (x.shape[0], INPUT, INPUT, 3), 'linear')
        for conv in self.convs:
            x = jax.nn.gelu(conv(x))
        return self.head(jnp.mean(x, axis=(1, 2)))
