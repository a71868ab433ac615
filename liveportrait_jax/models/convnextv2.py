"""ConvNeXt-V2 backbone with LivePortrait's keypoint / pose / expression heads (motion extractor M)."""

import jax
import jax.numpy as jnp
from flax import nnx

from liveportrait_jax.models.layers import conv, linear

LN_EPS = 1e-6  # ConvNeXt's LayerNorms use 1e-6 (Flax's default is also 1e-6, torch's is 1e-5)


def layer_norm(features, *, rngs, dtype=None):
    return nnx.LayerNorm(features, epsilon=LN_EPS, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


class GRN(nnx.Module):
    """Global response normalisation: gamma * (x * Nx) + beta + x, Nx = ||x||_HW / mean_C(||x||_HW)."""

    def __init__(self, dim, *, dtype=None):
        # Stored (1, 1, 1, C) like the reference so the checkpoint shape is kept as is.
        self.gamma = nnx.Param(jnp.zeros((1, 1, 1, dim), jnp.float32))
        self.beta = nnx.Param(jnp.zeros((1, 1, 1, dim), jnp.float32))
        self.dtype = dtype

    def __call__(self, x):
        xf = x.astype(jnp.float32)
        gx = jnp.sqrt(jnp.sum(jnp.square(xf), axis=(1, 2), keepdims=True))
        nx = gx / (jnp.mean(gx, axis=-1, keepdims=True) + 1e-6)
        out = self.gamma[...] * (xf * nx) + self.beta[...] + xf
        return out.astype(x.dtype)


class Block(nnx.Module):
    """dwconv7x7 -> LN -> Linear 4x -> GELU (erf) -> GRN -> Linear -> + x (drop-path off)."""

    def __init__(self, dim, *, rngs, dtype=None):
        self.dwconv = conv(dim, dim, (7, 7), padding=3, groups=dim, rngs=rngs, dtype=dtype)
        self.norm = layer_norm(dim, rngs=rngs, dtype=dtype)
        self.pwconv1 = linear(dim, 4 * dim, rngs=rngs, dtype=dtype)
        self.grn = GRN(4 * dim, dtype=dtype)
        self.pwconv2 = linear(4 * dim, dim, rngs=rngs, dtype=dtype)

    def __call__(self, x):
        y = self.norm(self.dwconv(x))
        y = jax.nn.gelu(self.pwconv1(y), approximate=False)
        y = self.pwconv2(self.grn(y))
        return x + y


class ConvNeXtV2(nnx.Module):
    """(B, H, W, 3) -> dict of raw heads: pitch/yaw/roll (B, 66) logits, t (B, 3), exp (B, 3K),
    scale (B, 1), kp (B, 3K)."""

    def __init__(self, *, depths, dims, num_kp, num_bins=66, in_chans=3, rngs, dtype=None):
        stem = nnx.List(
            [
                conv(in_chans, dims[0], (4, 4), stride=4, rngs=rngs, dtype=dtype),
                layer_norm(dims[0], rngs=rngs, dtype=dtype),
            ]
        )
        layers = [stem]
        for i in range(3):
            layers.append(
                nnx.List(
                    [
                        layer_norm(dims[i], rngs=rngs, dtype=dtype),
                        conv(dims[i], dims[i + 1], (2, 2), stride=2, rngs=rngs, dtype=dtype),
                    ]
                )
            )
        self.downsample_layers = nnx.List(layers)
        self.stages = nnx.List(
            [
                nnx.List([Block(dims[i], rngs=rngs, dtype=dtype) for _ in range(depths[i])])
                for i in range(4)
            ]
        )
        self.norm = layer_norm(dims[-1], rngs=rngs, dtype=dtype)
        self.fc_kp = linear(dims[-1], 3 * num_kp, rngs=rngs, dtype=dtype)
        self.fc_scale = linear(dims[-1], 1, rngs=rngs, dtype=dtype)
        self.fc_pitch = linear(dims[-1], num_bins, rngs=rngs, dtype=dtype)
        self.fc_yaw = linear(dims[-1], num_bins, rngs=rngs, dtype=dtype)
        self.fc_roll = linear(dims[-1], num_bins, rngs=rngs, dtype=dtype)
        self.fc_t = linear(dims[-1], 3, rngs=rngs, dtype=dtype)
        self.fc_exp = linear(dims[-1], 3 * num_kp, rngs=rngs, dtype=dtype)

    def __call__(self, x):
        for down, stage in zip(self.downsample_layers, self.stages):
            for layer in down:
                x = layer(x)
            for block in stage:
                x = block(x)
        x = self.norm(jnp.mean(x, axis=(1, 2)))
        heads = {
            name: getattr(self, f'fc_{name}')(x)
            for name in ('pitch', 'yaw', 'roll', 't', 'exp', 'scale', 'kp')
        }
        return {k: v.astype(jnp.float32) for k, v in heads.items()}


class MotionExtractor(nnx.Module):
    """Motion extractor M: the reference wraps the backbone as `detector`, hence the key prefix."""

    BACKBONES = {'convnextv2_tiny': ((3, 3, 9, 3), (96, 192, 384, 768))}

    def __init__(
        self,
        num_kp,
        backbone='convnextv2_tiny',
        depths=None,
        dims=None,
        num_bins=66,
        *,
        rngs,
        dtype=None,
    ):
        if depths is None or dims is None:
            if backbone not in self.BACKBONES:
                raise ValueError(f'unknown backbone {backbone!r} and no depths/dims given')
            depths, dims = self.BACKBONES[backbone]
        self.detector = ConvNeXtV2(
            depths=tuple(depths),
            dims=tuple(dims),
            num_kp=num_kp,
            num_bins=num_bins,
            rngs=rngs,
            dtype=dtype,
        )

    def __call__(self, x):
        return self.detector(x)
