"""Appearance feature extractor F: source image -> 3-D appearance feature volume f_s."""

from flax import nnx

from liveportrait_jax.models.layers import DownBlock2d, ResBlock3d, SameBlock2d, conv, unfold_depth


class AppearanceFeatureExtractor(nnx.Module):
    """Released config: (B, 256, 256, 3) in [0, 1] -> (B, 16, 64, 64, 32) = (B, D, H, W, C)."""

    def __init__(
        self,
        image_channel,
        block_expansion,
        num_down_blocks,
        max_features,
        reshape_channel,
        reshape_depth,
        num_resblocks,
        *,
        rngs,
        dtype=None,
    ):
        self.reshape_channel = reshape_channel
        self.reshape_depth = reshape_depth
        self.first = SameBlock2d(image_channel, block_expansion, rngs=rngs, dtype=dtype)
        blocks = []
        out_features = block_expansion
        for i in range(num_down_blocks):
            in_features = min(max_features, block_expansion * (2**i))
            out_features = min(max_features, block_expansion * (2 ** (i + 1)))
            blocks.append(DownBlock2d(in_features, out_features, rngs=rngs, dtype=dtype))
        self.down_blocks = nnx.List(blocks)
        self.second = conv(out_features, max_features, (1, 1), rngs=rngs, dtype=dtype)
        # The reference names these '3dr0', '3dr1', ... inside an nn.Sequential; keep the names.
        self.resblocks_3d = nnx.Dict(
            {
                f'3dr{i}': ResBlock3d(reshape_channel, rngs=rngs, dtype=dtype)
                for i in range(num_resblocks)
            }
        )
        self.num_resblocks = num_resblocks

    def __call__(self, image):
        out = self.first(image)
        for block in self.down_blocks:
            out = block(out)
        out = self.second(out)  # (B, 64, 64, 512)
        f_s = unfold_depth(out, self.reshape_channel)  # (B, 16, 64, 64, 32)
        for i in range(self.num_resblocks):
            f_s = self.resblocks_3d[f'3dr{i}'](f_s)
        return f_s
