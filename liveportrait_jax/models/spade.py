"""SPADE generator G: warped feature (B, 64, 64, 256) -> image (B, 512, 512, 3) in [0, 1]."""

import jax
import jax.numpy as jnp
from flax import nnx

from liveportrait_jax.models.layers import (
    conv,
    instance_norm,
    pixel_shuffle,
    resize_nearest,
    upsample_nearest,
)

SPADE_HIDDEN = 128


class SPADE(nnx.Module):
    """InstanceNorm(x) * (1 + gamma(seg)) + beta(seg), seg nearest-resized to x."""

    def __init__(self, norm_nc, label_nc, *, rngs, dtype=None):
        # mlp_shared is Sequential(conv, ReLU) in the reference: index 0 holds the conv.
        self.mlp_shared = nnx.List(
            [conv(label_nc, SPADE_HIDDEN, (3, 3), padding=1, rngs=rngs, dtype=dtype)]
        )
        self.mlp_gamma = conv(SPADE_HIDDEN, norm_nc, (3, 3), padding=1, rngs=rngs, dtype=dtype)
        self.mlp_beta = conv(SPADE_HIDDEN, norm_nc, (3, 3), padding=1, rngs=rngs, dtype=dtype)

    def __call__(self, x, segmap):
        normalized = instance_norm(x)
        seg = resize_nearest(segmap, x.shape[1:3])
        actv = jax.nn.relu(self.mlp_shared[0](seg))
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nnx.Module):
    """SPADE residual block. The convs carry spectral norm in the checkpoint; it is folded into the
    kernel at conversion time, so here they are plain convolutions."""

    def __init__(self, fin, fout, label_nc, *, rngs, dtype=None):
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        self.conv_0 = conv(fin, fmiddle, (3, 3), padding=1, rngs=rngs, dtype=dtype)
        self.conv_1 = conv(fmiddle, fout, (3, 3), padding=1, rngs=rngs, dtype=dtype)
        self.norm_0 = SPADE(fin, label_nc, rngs=rngs, dtype=dtype)
        self.norm_1 = SPADE(fmiddle, label_nc, rngs=rngs, dtype=dtype)
        if self.learned_shortcut:
            self.conv_s = conv(fin, fout, (1, 1), use_bias=False, rngs=rngs, dtype=dtype)
            self.norm_s = SPADE(fin, label_nc, rngs=rngs, dtype=dtype)

    def __call__(self, x, seg):
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(jax.nn.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(jax.nn.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx


class SPADEDecoder(nnx.Module):
    """(B, 64, 64, 256) -> (B, 512, 512, 3) sigmoid image (released config)."""

    NUM_MIDDLE = 6

    def __init__(
        self,
        upscale=1,
        max_features=256,
        block_expansion=64,
        out_channels=64,
        num_down_blocks=2,
        *,
        rngs,
        dtype=None,
    ):
        input_channels = min(max_features, block_expansion * (2**num_down_blocks))
        self.upscale = upscale
        self.fc = conv(
            input_channels, 2 * input_channels, (3, 3), padding=1, rngs=rngs, dtype=dtype
        )
        for i in range(self.NUM_MIDDLE):
            setattr(
                self,
                f'G_middle_{i}',
                SPADEResnetBlock(
                    2 * input_channels, 2 * input_channels, input_channels, rngs=rngs, dtype=dtype
                ),
            )
        self.up_0 = SPADEResnetBlock(
            2 * input_channels, input_channels, input_channels, rngs=rngs, dtype=dtype
        )
        self.up_1 = SPADEResnetBlock(
            input_channels, out_channels, input_channels, rngs=rngs, dtype=dtype
        )
        if upscale is None or upscale <= 1:
            self.conv_img = conv(out_channels, 3, (3, 3), padding=1, rngs=rngs, dtype=dtype)
        else:
            # Sequential(conv, PixelShuffle(2)) in the reference: index 0 holds the conv.
            self.conv_img = nnx.List(
                [conv(out_channels, 3 * 4, (3, 3), padding=1, rngs=rngs, dtype=dtype)]
            )

    def __call__(self, feature):
        seg = feature
        x = self.fc(feature)
        for i in range(self.NUM_MIDDLE):
            x = getattr(self, f'G_middle_{i}')(x, seg)
        x = self.up_0(upsample_nearest(x, (2, 2)), seg)
        x = self.up_1(upsample_nearest(x, (2, 2)), seg)
        x = jax.nn.leaky_relu(x, 0.2)
        if self.upscale is None or self.upscale <= 1:
            x = self.conv_img(x)
        else:
            x = pixel_shuffle(self.conv_img[0](x), 2)
        return jax.nn.sigmoid(x.astype(jnp.float32))
