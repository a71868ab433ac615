"""Read PyTorch `.pth` checkpoints with numpy alone: no PyTorch, no arbitrary code.

A `torch.save` file (the zip format PyTorch has written since 1.6) is a zip archive holding
`<name>/data.pkl`, a pickle whose tensors refer to raw storages `<name>/data/<key>` through pickle's
persistent ids, plus a `byteorder` record. We unpickle with a restricted Unpickler that resolves only
the globals needed to rebuild tensors and state dicts; any other global (os.system, builtins.eval, a
class from some module...) is refused with an error naming the file and the global, before it can run.
"""

import os
import pickle
import zipfile

import numpy as np

from liveportrait_jax.weights.errors import CheckpointError, UnsafeCheckpointError

_STORAGE_DTYPES = {
    'DoubleStorage': np.float64, 'FloatStorage': np.float32, 'HalfStorage': np.float16,
    'LongStorage': np.int64, 'IntStorage': np.int32, 'ShortStorage': np.int16,
    'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
    'BFloat16Storage': 'bfloat16',
}


class _StorageType:
    """Stand-in for torch.<X>Storage classes: only carries the element dtype."""

    def __init__(self, name):
        self.name = name
        dtype = _STORAGE_DTYPES[name]
        if dtype == 'bfloat16':
            import ml_dtypes  # shipped with JAX
            dtype = ml_dtypes.bfloat16
        self.dtype = np.dtype(dtype)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    del requires_grad, backward_hooks, metadata
    size, stride = tuple(size), tuple(stride)
    if not size:
        return np.array(storage[storage_offset])
    itemsize = storage.dtype.itemsize
    needed = storage_offset + 1 + sum((n - 1) * s for n, s in zip(size, stride))
    if any(n == 0 for n in size):
        return np.zeros(size, storage.dtype)
    if needed > storage.size:
        raise ValueError(f'tensor of size {size} stride {stride} offset {storage_offset} '
                         f'overruns its storage of {storage.size} elements')
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:], shape=size, strides=tuple(s * itemsize for s in stride))
    return np.ascontiguousarray(view)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    del requires_grad, backward_hooks
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    del requires_grad, backward_hooks, state
    return data


class _OrderedDict(dict):
    """collections.OrderedDict stand-in; a subclass so pickle's BUILD can set `_metadata` on it."""


_ALLOWED = {
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter_with_state,
    ('collections', 'OrderedDict'): _OrderedDict,
}


class _RestrictedUnpickler(pickle.Unpickler):

    def __init__(self, fileobj, archive, prefix, source):
        super().__init__(fileobj)
        self._archive = archive
        self._prefix = prefix
        self._source = source
        self._storages = {}
        byteorder = f'{prefix}byteorder'
        self._swap = (byteorder in archive.namelist()
                      and archive.read(byteorder).decode().strip() == 'big')

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == 'torch' and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeCheckpointError(
            f'{self._source}: refusing to load global {module}.{name} from the checkpoint pickle; '
            'only tensor-rebuild globals are allowed (the file may be malicious or not a '
            'LivePortrait checkpoint)')

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == 'storage'):
            raise UnsafeCheckpointError(f'{self._source}: unsupported persistent id {pid!r}')
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f'{self._source}: unsupported storage type {storage_type!r}')
        if key not in self._storages:
            record = f'{self._prefix}data/{key}'
            try:
                raw = self._archive.read(record)
            except KeyError:
                raise CheckpointError(f'{self._source}: storage record {record} is missing '
                                      '(truncated or corrupt archive)') from None
            arr = np.frombuffer(raw, dtype=storage_type.dtype)
            if self._swap:
                arr = arr.byteswap()
            self._storages[key] = arr
        return self._storages[key]


def load_torch_checkpoint(path):
    """Reads a `.pth` file written by `torch.save` into nested dicts of numpy arrays.

    Raises:
      CheckpointError: the file is missing, not a zip checkpoint, truncated or corrupt.
      UnsafeCheckpointError: the pickle references a global outside the tensor-rebuild allow-list.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'{path}: checkpoint file not found')
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        with open(path, 'rb') as f:
            head = f.read(2)
        hint = (' (legacy pre-1.6 torch.save format; re-save it with a recent PyTorch)'
                if head[:1] == b'\x80' else ' (truncated or corrupt?)')
        raise CheckpointError(f'{path}: not a PyTorch zip checkpoint{hint}') from None
    with archive:
        pkls = [n for n in archive.namelist() if n.endswith('data.pkl')]
        if len(pkls) != 1:
            raise CheckpointError(f'{path}: expected one data.pkl record in the archive, '
                                  f'found {len(pkls)}')
        prefix = pkls[0][:-len('data.pkl')]
        try:
            with archive.open(pkls[0]) as f:
                return _RestrictedUnpickler(f, archive, prefix, path).load()
        except CheckpointError:
            raise
        except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, ValueError, OSError,
                TypeError, KeyError, IndexError) as e:
            raise CheckpointError(f'{path}: corrupt checkpoint ({type(e).__name__}: {e})') from None
