"""Fixed-size chunks over the frame axis: pad the last chunk, shard across local devices.

A video of any length compiles each jitted function once per chunk size: every call sees a batch of
exactly `chunk` frames (the last chunk is padded by repeating its final frame, and the padding is
dropped from the outputs). With several local devices the chunk's frame axis is sharded over them
(`jax.sharding`, data parallel), so the chunk size is rounded up to a multiple of the device count.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


class Chunker:
    def __init__(self, chunk, devices=None):
        self.devices = list(devices if devices is not None else jax.local_devices())
        n = len(self.devices)
        self.chunk = max(1, int(chunk))
        self.chunk = -(-self.chunk // n) * n  # a multiple of the device count
        self.mesh = Mesh(np.array(self.devices), ('frames',)) if n > 1 else None

    def shard(self, array):
        """Places a (chunk, ...) array with its frame axis split over the devices."""
        if self.mesh is None:
            return jax.device_put(array)
        spec = P('frames', *([None] * (np.ndim(array) - 1)))
        return jax.device_put(array, NamedSharding(self.mesh, spec))

    def spans(self, n):
        """(start, stop) of each chunk over n frames."""
        return [(i, min(i + self.chunk, n)) for i in range(0, n, self.chunk)]

    def pad(self, array, start, stop):
        """array[start:stop] padded to `chunk` rows by repeating the last row."""
        part = np.asarray(array[start:stop])
        missing = self.chunk - (stop - start)
        if missing:
            part = np.concatenate([part, np.repeat(part[-1:], missing, axis=0)])
        return part

    def map(self, fn, arrays, n, *, progress=None):
        """Applies fn(*chunk_arrays) -> pytree to every chunk and concatenates the valid rows.

        Chunk k+1 is dispatched before chunk k is copied back to the host, so device work overlaps
        with the transfer (JAX dispatch is asynchronous).
        """
        outs, pending = [], None
        for start, stop in self.spans(n):
            args = [self.shard(self.pad(a, start, stop)) for a in arrays]
            result = fn(*args)
            if pending is not None:
                outs.append(_host(*pending))
                if progress:
                    progress(pending[1])
            pending = (result, stop - start)
        if pending is not None:
            outs.append(_host(*pending))
            if progress:
                progress(pending[1])
        return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)

    def iterate(self, fn, arrays, n):
        """Like map, but yields (start, host outputs) per chunk, for streaming consumers."""
        pending = None
        for start, stop in self.spans(n):
            args = [self.shard(self.pad(a, start, stop)) for a in arrays]
            result = fn(*args)
            if pending is not None:
                yield pending[2], _host(*pending[:2])
            pending = (result, stop - start, start)
        if pending is not None:
            yield pending[2], _host(*pending[:2])


def _host(tree, valid):
    return jax.tree.map(lambda x: np.asarray(x)[:valid], tree)
