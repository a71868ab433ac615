"""Building blocks shared by the LivePortrait networks, channels-last (NHWC / NDHWC).

Attribute names follow the reference modules (`conv`, `norm`, ...), so a parameter's NNX path reads the
same as its PyTorch state-dict key. Epsilons and momenta are set explicitly: Flax's defaults differ from
PyTorch's (BatchNorm eps 1e-5 vs 1e-5 is equal, but momentum 0.99 vs 0.1 and LayerNorm eps 1e-6 vs 1e-5
are not).
"""

import functools

import jax
import jax.numpy as jnp
from flax import nnx

BN_EPS = 1e-5  # torch.nn.BatchNorm default
BN_MOMENTUM = 0.9  # torch momentum 0.1 == flax momentum 0.9 (only matters when training the stats)
IN_EPS = 1e-5  # torch.nn.InstanceNorm2d default


def precision_for(dtype):
    """The dot/conv precision of a compute dtype: float32 (or None, float32 weights) computes in
    float32. JAX's default on GPUs is TensorFloat-32 for float32 convolutions and matmuls (10
    mantissa bits), which moved the tiny fixtures' head pose and G output by 2-3e-4 on an H100,
    over the 1e-4 parity tolerance. Half-precision dtypes keep the backend's default."""
    if dtype is None or jnp.dtype(dtype) == jnp.float32:
        return jax.lax.Precision.HIGHEST
    return None


def conv(
    in_features,
    out_features,
    kernel_size,
    *,
    rngs,
    padding=0,
    stride=1,
    groups=1,
    use_bias=True,
    dtype=None,
):
    """A PyTorch-style convolution (symmetric integer padding), 2-D or 3-D by len(kernel_size)."""
    n = len(kernel_size)
    if n == 3 and stride == 1 and groups == 1:
        return Conv3d(
            in_features,
            out_features,
            kernel_size,
            padding=padding,
            use_bias=use_bias,
            rngs=rngs,
            dtype=dtype,
        )
    return nnx.Conv(
        in_features,
        out_features,
        kernel_size=tuple(kernel_size),
        strides=(stride,) * n,
        padding=[(padding, padding)] * n,
        feature_group_count=groups,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        precision=precision_for(dtype),
        rngs=rngs,
    )


class Conv3d(nnx.Module):
    """Stride-1 3-D convolution, NDHWC, with kernel (kd, kh, kw, I, O) and bias (O,) like nnx.Conv.

    XLA's CPU backend runs 3-D convolutions through a slow generic path (the 7x7x7 mask conv of W
    takes 22 s a frame), while its 2-D convolutions are fast. On CPU the depth axis is therefore
    folded into the batch and the convolution done as 2-D convolutions over depth taps, 3-10x
    faster with the same result up to float rounding. Other backends use the native 3-D conv.
    """

    def __init__(
        self, in_features, out_features, kernel_size, *, rngs, padding=0, use_bias=True, dtype=None
    ):
        shape = tuple(kernel_size) + (in_features, out_features)
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), shape, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if use_bias else None
        self.padding = padding
        self.dtype = dtype

    def __call__(self, x):
        dtype = self.dtype or jnp.result_type(x, self.kernel[...])
        x = x.astype(dtype)
        kernel = self.kernel[...].astype(dtype)
        precision = precision_for(dtype)
        if jax.default_backend() == 'cpu':
            y = conv3d_as_2d(x, kernel, self.padding, precision)
        else:
            p = self.padding
            y = jax.lax.conv_general_dilated(
                x, kernel, (1, 1, 1), [(p, p)] * 3, dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC'),
                precision=precision,
            )  # fmt: skip
        if self.bias is not None:
            y = y + self.bias[...].astype(dtype)
        return y


def conv3d_as_2d(x, kernel, padding, precision=None):
    """Stride-1 3-D convolution of (B, D, H, W, I) by (kd, kh, kw, I, O) via 2-D convolutions.

    Wide inputs use one 2-D conv producing all kd depth taps as extra output channels, then shift
    and add over depth; narrow inputs sum one 2-D conv per depth tap (cheaper when I is small).
    """
    b, d, h, w, cin = x.shape
    kd, kh, kw, _, cout = kernel.shape
    p = padding
    dn = ('NHWC', 'HWIO', 'NHWC')
    conv2d = functools.partial(
        jax.lax.conv_general_dilated,
        padding=[(p, p)] * 2,
        dimension_numbers=dn,
        precision=precision,
    )
    d_out = d + 2 * p - kd + 1
    if kd == 1:
        y = conv2d(x.reshape(b * d, h, w, cin), kernel[0], (1, 1))
        y = y.reshape(b, d, y.shape[1], y.shape[2], cout)
        return jnp.pad(y, ((0, 0), (p, p), (0, 0), (0, 0), (0, 0))) if p else y
    if cin >= 64:
        taps = jnp.transpose(kernel, (1, 2, 3, 0, 4)).reshape(kh, kw, cin, kd * cout)
        y = conv2d(x.reshape(b * d, h, w, cin), taps, (1, 1))
        y = y.reshape(b, d, y.shape[1], y.shape[2], kd, cout)
        y = jnp.pad(y, ((0, 0), (p, p), (0, 0), (0, 0), (0, 0), (0, 0)))
        return sum(y[:, dz : dz + d_out, :, :, dz] for dz in range(kd))
    xp = jnp.pad(x, ((0, 0), (p, p), (0, 0), (0, 0), (0, 0)))
    out = None
    for dz in range(kd):
        xs = xp[:, dz : dz + d_out].reshape(b * d_out, h, w, cin)
        y = conv2d(xs, kernel[dz], (1, 1))
        out = y if out is None else out + y
    return out.reshape(b, d_out, out.shape[1], out.shape[2], cout)


def batch_norm(num_features, *, rngs, dtype=None):
    """Inference-mode BatchNorm with the reference's running statistics (eps 1e-5)."""
    return nnx.BatchNorm(
        num_features,
        use_running_average=True,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPS,
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )


def linear(in_features, out_features, *, rngs, dtype=None):
    return nnx.Linear(
        in_features, out_features, dtype=dtype, param_dtype=jnp.float32,
        precision=precision_for(dtype), rngs=rngs,
    )  # fmt: skip


def instance_norm(x, eps=IN_EPS):
    """InstanceNorm2d without affine parameters over (H, W) of an NHWC tensor, biased variance.

    Statistics are taken in float32 so that a bf16 model keeps the reference's normalisation.
    """
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(xf - mean), axis=(1, 2), keepdims=True)
    return ((xf - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


def upsample_nearest(x, factors):
    """Nearest upsampling by integer factors over the spatial axes (all but batch and channels)."""
    for axis, f in enumerate(factors, start=1):
        if f != 1:
            x = jnp.repeat(x, f, axis=axis)
    return x


def resize_nearest(x, size):
    """PyTorch `F.interpolate(mode='nearest')` of an NHWC tensor to spatial `size` = (h, w).

    Source index = floor(dst * in / out), which is what PyTorch uses for the legacy 'nearest' mode.
    """
    _, h, w, _ = x.shape
    oh, ow = size
    if (oh, ow) == (h, w):
        return x
    iy = jnp.floor(jnp.arange(oh) * (h / oh)).astype(jnp.int32)
    ix = jnp.floor(jnp.arange(ow) * (w / ow)).astype(jnp.int32)
    return x[:, iy][:, :, ix]


def pixel_shuffle(x, r):
    """torch.nn.PixelShuffle for NHWC: channel c*r*r + i*r + j -> pixel (r*h + i, r*w + j) of channel c."""
    b, h, w, crr = x.shape
    c = crr // (r * r)
    x = x.reshape(b, h, w, c, r, r)
    x = x.transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(b, h * r, w * r, c)


def fold_depth(x):
    """(B, D, H, W, C) -> (B, H, W, C*D), channel index c*D + d as PyTorch's view(B, C*D, H, W)."""
    b, d, h, w, c = x.shape
    return x.transpose(0, 2, 3, 4, 1).reshape(b, h, w, c * d)


def unfold_depth(x, channels):
    """(B, H, W, C*D) -> (B, D, H, W, C), the inverse of `fold_depth` (PyTorch's view(B, C, D, H, W))."""
    b, h, w, cd = x.shape
    d = cd // channels
    return x.reshape(b, h, w, channels, d).transpose(0, 4, 1, 2, 3)


class SameBlock2d(nnx.Module):
    """conv3x3 -> BN -> ReLU (or LeakyReLU 0.01), resolution preserved."""

    def __init__(
        self, in_features, out_features, *, rngs, kernel_size=3, padding=1, lrelu=False, dtype=None
    ):
        self.conv = conv(
            in_features,
            out_features,
            (kernel_size, kernel_size),
            padding=padding,
            rngs=rngs,
            dtype=dtype,
        )
        self.norm = batch_norm(out_features, rngs=rngs, dtype=dtype)
        self.lrelu = lrelu

    def __call__(self, x):
        x = self.norm(self.conv(x))
        return jax.nn.leaky_relu(x, 0.01) if self.lrelu else jax.nn.relu(x)


class DownBlock2d(nnx.Module):
    """conv3x3 -> BN -> ReLU -> 2x2 average pool."""

    def __init__(self, in_features, out_features, *, rngs, dtype=None):
        self.conv = conv(in_features, out_features, (3, 3), padding=1, rngs=rngs, dtype=dtype)
        self.norm = batch_norm(out_features, rngs=rngs, dtype=dtype)

    def __call__(self, x):
        x = jax.nn.relu(self.norm(self.conv(x)))
        return nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))


class ResBlock3d(nnx.Module):
    """Pre-activation 3-D residual block: BN, ReLU, conv3, BN, ReLU, conv3, + x."""

    def __init__(self, features, *, rngs, dtype=None):
        self.conv1 = conv(features, features, (3, 3, 3), padding=1, rngs=rngs, dtype=dtype)
        self.conv2 = conv(features, features, (3, 3, 3), padding=1, rngs=rngs, dtype=dtype)
        self.norm1 = batch_norm(features, rngs=rngs, dtype=dtype)
        self.norm2 = batch_norm(features, rngs=rngs, dtype=dtype)

    def __call__(self, x):
        out = self.conv1(jax.nn.relu(self.norm1(x)))
        out = self.conv2(jax.nn.relu(self.norm2(out)))
        return out + x


class DownBlock3d(nnx.Module):
    """conv3x3x3 -> BN -> ReLU -> average pool (1, 2, 2)."""

    def __init__(self, in_features, out_features, *, rngs, dtype=None):
        self.conv = conv(in_features, out_features, (3, 3, 3), padding=1, rngs=rngs, dtype=dtype)
        self.norm = batch_norm(out_features, rngs=rngs, dtype=dtype)

    def __call__(self, x):
        x = jax.nn.relu(self.norm(self.conv(x)))
        return nnx.avg_pool(x, window_shape=(1, 2, 2), strides=(1, 2, 2))


class UpBlock3d(nnx.Module):
    """Nearest upsample (1, 2, 2) -> conv3x3x3 -> BN -> ReLU."""

    def __init__(self, in_features, out_features, *, rngs, dtype=None):
        self.conv = conv(in_features, out_features, (3, 3, 3), padding=1, rngs=rngs, dtype=dtype)
        self.norm = batch_norm(out_features, rngs=rngs, dtype=dtype)

    def __call__(self, x):
        x = upsample_nearest(x, (1, 2, 2))
        return jax.nn.relu(self.norm(self.conv(x)))
