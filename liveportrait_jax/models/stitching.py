"""Stitching and retargeting MLPs S (stitching, eye, lip): Linear+ReLU stacks."""

import jax
from flax import nnx

from liveportrait_jax.models.layers import linear


class StitchingRetargetingNetwork(nnx.Module):
    """(B, input_size) -> (B, output_size).

    The reference is nn.Sequential(Linear, ReLU, Linear, ReLU, ..., Linear): the Linear layers sit at
    the even indices 0, 2, 4, ..., which are the keys of `mlp` here.
    """

    def __init__(self, input_size, hidden_sizes, output_size, *, rngs, dtype=None):
        sizes = [input_size] + list(hidden_sizes) + [output_size]
        self.num_layers = len(sizes) - 1
        self.mlp = nnx.Dict(
            {
                str(2 * i): linear(sizes[i], sizes[i + 1], rngs=rngs, dtype=dtype)
                for i in range(self.num_layers)
            }
        )

    def __call__(self, x):
        for i in range(self.num_layers):
            x = self.mlp[str(2 * i)](x)
            if i < self.num_layers - 1:
                x = jax.nn.relu(x)
        return x
