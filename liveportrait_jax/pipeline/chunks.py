"""Fixed-size chunks over the frame axis: pad the last chunk, shard across local devices.

A video of any length compiles each jitted function once per chunk size: every call sees a batch of
exactly `chunk` frames (the last chunk is padded by repeating its final frame, and the padding is
dropped from the outputs). With several local devices the chunk's frame axis is sharded over them
(`jax.sharding`, data parallel), so the chunk size is rounded up to a multiple of the device count.
"""

import collections
import time

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from liveportrait_jax import stopping


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

    def batches(self, rows, n_device):
        """Groups an iterator of per-frame rows (tuples) into chunks.

        The first `n_device` entries of a row are arrays, stacked into (chunk, ...) arrays (the last
        chunk padded by repeating its last row); the others are host payload, kept as lists.
        Yields (start, valid, stacked arrays, payload lists).
        """
        buf, start = [], 0
        for row in rows:
            buf.append(row)
            if len(buf) == self.chunk:
                yield self._stack(start, buf, n_device)
                start, buf = start + len(buf), []
        if buf:
            yield self._stack(start, buf, n_device)

    def _stack(self, start, buf, n_device):
        valid = len(buf)
        padded = buf + [buf[-1]] * (self.chunk - valid)
        cols = list(zip(*padded))
        arrays = [np.stack(c) for c in cols[:n_device]]
        payload = [list(c[:valid]) for c in cols[n_device:]]
        return start, valid, arrays, payload

    def stream(self, fn, batches, ahead=2):
        """Applies fn(*arrays) -> pytree to each batch of `batches` (see `batches`), in order.

        Yields (start, valid, host outputs cut to the valid rows, payload). Up to `ahead` batches
        are dispatched before the oldest is copied back (JAX dispatch is asynchronous), so the
        device works on the next chunks while the host waits for, and handles, this one.
        """
        pending = collections.deque()
        try:
            for start, valid, arrays, payload in batches:
                stopping.check()  # between chunks: a safe point of every pass
                result = fn(*[self.shard(a) for a in arrays])
                pending.append((start, valid, result, payload))
                if len(pending) > ahead:
                    yield _done(pending.popleft())
            while pending:
                yield _done(pending.popleft())
        finally:
            # Ended early by an error: let the dispatched chunks finish, so no device computation
            # is still running while the interpreter shuts down (XLA's threads outliving Python
            # crash the process at exit). Not on a stop request: waiting for seconds of work
            # ahead would delay the exit; the CLI leaves with os._exit when work is left.
            if stopping.requested() is None:
                for entry in pending:
                    _wait(entry[2])

    def map(self, fn, arrays, n, *, progress=None):
        """fn over in-memory (n, ...) arrays, chunk by chunk; the valid rows concatenated."""
        outs = []
        for _, valid, out, _ in self.stream(fn, self._slices(arrays, n)):
            outs.append(out)
            if progress:
                progress(valid)
        return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)

    def _slices(self, arrays, n):
        for start, stop in self.spans(n):
            yield start, stop - start, [self.pad(a, start, stop) for a in arrays], []


def _wait(tree):
    try:
        jax.block_until_ready(tree)
    except Exception:  # a failed computation has nothing left running
        pass


def _done(entry):
    start, valid, result, payload = entry
    # Waits for the device in short steps rather than in one blocking copy: a stop request is
    # acted on within milliseconds, not after the chunk (up to a second on a CPU).
    leaves = [x for x in jax.tree.leaves(result) if hasattr(x, 'is_ready')]
    while not all(x.is_ready() for x in leaves):
        stopping.check()
        time.sleep(0.002)
    return start, valid, _host(result, valid), payload


def _host(tree, valid):
    return jax.tree.map(lambda x: np.asarray(x)[:valid], tree)
