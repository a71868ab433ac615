"""Dense motion network of W: sparse keypoint motions -> dense deformation and occlusion map."""

import jax
import jax.numpy as jnp
from flax import nnx

from liveportrait_jax.models.layers import DownBlock3d, UpBlock3d, batch_norm, conv, fold_depth
from liveportrait_jax.ops.grid_sample import grid_sample_3d
from liveportrait_jax.ops.keypoints import kp2gaussian, make_coordinate_grid

KP_VARIANCE = 0.01


class Encoder(nnx.Module):
    def __init__(self, block_expansion, in_features, num_blocks, max_features, *, rngs, dtype=None):
        blocks = []
        for i in range(num_blocks):
            cin = in_features if i == 0 else min(max_features, block_expansion * (2**i))
            cout = min(max_features, block_expansion * (2 ** (i + 1)))
            blocks.append(DownBlock3d(cin, cout, rngs=rngs, dtype=dtype))
        self.down_blocks = nnx.List(blocks)

    def __call__(self, x):
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nnx.Module):
    def __init__(self, block_expansion, in_features, num_blocks, max_features, *, rngs, dtype=None):
        blocks = []
        for i in reversed(range(num_blocks)):
            cin = (1 if i == num_blocks - 1 else 2) * min(
                max_features, block_expansion * (2 ** (i + 1))
            )
            cout = min(max_features, block_expansion * (2**i))
            blocks.append(UpBlock3d(cin, cout, rngs=rngs, dtype=dtype))
        self.up_blocks = nnx.List(blocks)
        self.out_filters = block_expansion + in_features
        self.conv = conv(
            self.out_filters, self.out_filters, (3, 3, 3), padding=1, rngs=rngs, dtype=dtype
        )
        self.norm = batch_norm(self.out_filters, rngs=rngs, dtype=dtype)

    def __call__(self, skips):
        skips = list(skips)
        out = skips.pop()
        for block in self.up_blocks:
            out = block(out)
            # The reference concatenates [upsampled, skip] along channels.
            out = jnp.concatenate([out, skips.pop().astype(out.dtype)], axis=-1)
        return jax.nn.relu(self.norm(self.conv(out)))


class Hourglass(nnx.Module):
    def __init__(self, block_expansion, in_features, num_blocks, max_features, *, rngs, dtype=None):
        self.encoder = Encoder(
            block_expansion, in_features, num_blocks, max_features, rngs=rngs, dtype=dtype
        )
        self.decoder = Decoder(
            block_expansion, in_features, num_blocks, max_features, rngs=rngs, dtype=dtype
        )
        self.out_filters = self.decoder.out_filters

    def __call__(self, x):
        return self.decoder(self.encoder(x))


class DenseMotionNetwork(nnx.Module):
    """f_s (B, D, H, W, C), kp_driving, kp_source (B, K, 3) -> dict:
    mask (B, D, H, W, K+1), deformation (B, D, H, W, 3), occlusion_map (B, H, W, 1)."""

    def __init__(
        self,
        block_expansion,
        num_blocks,
        max_features,
        num_kp,
        feature_channel,
        reshape_depth,
        compress,
        estimate_occlusion_map=True,
        *,
        rngs,
        dtype=None,
    ):
        self.num_kp = num_kp
        self.hourglass = Hourglass(
            block_expansion,
            (num_kp + 1) * (compress + 1),
            num_blocks,
            max_features,
            rngs=rngs,
            dtype=dtype,
        )
        out_filters = self.hourglass.out_filters
        self.mask = conv(out_filters, num_kp + 1, (7, 7, 7), padding=3, rngs=rngs, dtype=dtype)
        self.compress = conv(feature_channel, compress, (1, 1, 1), rngs=rngs, dtype=dtype)
        self.norm = batch_norm(compress, rngs=rngs, dtype=dtype)
        self.estimate_occlusion_map = estimate_occlusion_map
        if estimate_occlusion_map:
            self.occlusion = conv(
                out_filters * reshape_depth, 1, (7, 7), padding=3, rngs=rngs, dtype=dtype
            )

    def sparse_motions(self, spatial, kp_driving, kp_source):
        """(B, K+1, d, h, w, 3): identity grid first, then grid - kp_driving + kp_source per keypoint.

        Kept in the keypoints' dtype (float32) whatever the compute dtype: these are sampling
        coordinates, and bf16 would move them by up to a quarter of a voxel.
        """
        bs = kp_driving.shape[0]
        identity = make_coordinate_grid(spatial, dtype=kp_source.dtype)[None, None]
        shift = (kp_source - kp_driving)[:, :, None, None, None, :]
        driving_to_source = identity + shift
        identity = jnp.broadcast_to(identity, (bs, 1) + identity.shape[2:])
        return jnp.concatenate([identity, driving_to_source], axis=1)

    def __call__(self, feature, kp_driving, kp_source):
        bs, d, h, w, _ = feature.shape
        feature = jax.nn.relu(self.norm(self.compress(feature)))  # (B, d, h, w, compress)
        motions = self.sparse_motions((d, h, w), kp_driving, kp_source)  # (B, K+1, d, h, w, 3)
        # One gather pass samples all K+1 motions from the same volume: (B, K+1, d, h, w, c).
        deformed = grid_sample_3d(feature, motions)
        heat = kp2gaussian(kp_driving, (d, h, w), KP_VARIANCE) - kp2gaussian(
            kp_source, (d, h, w), KP_VARIANCE
        )  # (B, d, h, w, K)
        heat = jnp.concatenate([jnp.zeros_like(heat[..., :1]), heat], axis=-1)  # background first
        # Per motion: [heatmap, deformed feature] -> channel index k * (c + 1) + j, as the reference.
        deformed = jnp.moveaxis(deformed, 1, 4)  # (B, d, h, w, K+1, c)
        x = jnp.concatenate([heat[..., None].astype(deformed.dtype), deformed], axis=-1)
        x = x.reshape(bs, d, h, w, -1)

        prediction = self.hourglass(x)
        mask = jax.nn.softmax(self.mask(prediction).astype(jnp.float32), axis=-1)  # (B,d,h,w,K+1)
        deformation = jnp.einsum(
            'bkdhwi,bdhwk->bdhwi', motions, mask, precision=jax.lax.Precision.HIGHEST
        )
        out = {'mask': mask, 'deformation': deformation}
        if self.estimate_occlusion_map:
            occ = self.occlusion(fold_depth(prediction))
            out['occlusion_map'] = jax.nn.sigmoid(occ.astype(jnp.float32))
        return out
