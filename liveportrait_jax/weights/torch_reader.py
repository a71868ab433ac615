"""Read PyTorch `.pth` checkpoints with numpy alone: no PyTorch, no arbitrary code.

A `torch.save` file (the zip format PyTorch has written since 1.6) is a zip archive holding
`<name>/data.pkl`, a pickle whose tensors refer to raw storages `<name>/data/<key>` through pickle's
persistent ids, plus a `byteorder` record. We unpickle with a restricted Unpickler that resolves only
the globals needed to rebuild tensors and state dicts; any other global (os.system, builtins.eval, a
class from some module...) is refused with an error naming the file and the global, before it can run.

Sizes in the file are untrusted too: a pickle can claim a terabyte tensor over a 16-byte storage.
Every storage's element count is checked against the byte length of its zip record, and every
tensor's extent (offset, sizes and strides) against its storage, before anything is allocated. The
pure-Python unpickler is used because the C one allocates whatever length a bytes opcode claims
before reading it; state-dict pickles are small, so its speed does not matter.
"""

import io
import math
import os
import pickle
import zipfile

import numpy as np

from liveportrait_jax.weights.errors import CheckpointError, UnsafeCheckpointError

_STORAGE_DTYPES = {
    'DoubleStorage': np.float64,
    'FloatStorage': np.float32,
    'HalfStorage': np.float16,
    'LongStorage': np.int64,
    'IntStorage': np.int32,
    'ShortStorage': np.int16,
    'CharStorage': np.int8,
    'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
    'BFloat16Storage': 'bfloat16',
}
# numpy 1.x arrays have at most 32 dimensions; no model weight comes near.
_MAX_NDIM = 32
# Zero or overlapping strides (a saved `expand()` view) materialize more bytes than the file holds.
# Model weights never need that; the cap stops a 16-byte storage from claiming terabytes this way.
_MAX_EXPANDED_BYTES = 1 << 30


class _StorageType:
    """Stand-in for torch.<X>Storage classes: only carries the element dtype."""

    def __init__(self, name):
        self.name = name
        dtype = _STORAGE_DTYPES[name]
        if dtype == 'bfloat16':
            import ml_dtypes  # shipped with JAX

            dtype = ml_dtypes.bfloat16
        self.dtype = np.dtype(dtype)


class _Storage:
    """One storage record's elements, with the record's name for error messages."""

    def __init__(self, record, array):
        self.record = record
        self.array = array
        self.dtype = array.dtype
        self.nbytes = array.nbytes


class _BadTensor:
    """Returned instead of a tensor whose metadata does not fit its storage.

    The rebuild call cannot know the tensor's key, so the problem is reported once the state dict is
    complete (see `_first_bad_tensor`), naming the key.
    """

    def __init__(self, problem):
        self.problem = problem


def _fmt_bytes(n):
    return str(n) if n < 10**6 else f'{n:.2g}'


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _layout_problem(storage, offset, size, stride):
    """Why (offset, size, stride) cannot be a view of `storage`, or None. Pure arithmetic."""
    if not isinstance(storage, _Storage):
        return f'has no storage record (got {type(storage).__name__})'
    if not (
        isinstance(size, (tuple, list))
        and isinstance(stride, (tuple, list))
        and all(map(_is_int, size))
        and all(map(_is_int, stride))
        and _is_int(offset)
    ):
        return f'has a malformed size {size!r}, stride {stride!r} or offset {offset!r}'
    if len(size) > _MAX_NDIM:
        return f'has {len(size)} dimensions (at most {_MAX_NDIM} are supported)'
    if len(size) != len(stride):
        return f'has {len(size)} sizes but {len(stride)} strides'
    if min(size, default=0) < 0 or min(stride, default=0) < 0 or offset < 0:
        return (
            f'has a negative size, stride or offset (size {tuple(size)}, '
            f'stride {tuple(stride)}, offset {offset})'
        )
    numel = math.prod(size)
    if numel == 0:
        return None
    itemsize = storage.dtype.itemsize
    needed = (offset + 1 + sum((n - 1) * s for n, s in zip(size, stride))) * itemsize
    if needed > storage.nbytes:
        return (
            f'needs {_fmt_bytes(needed)} bytes but its storage {storage.record!r} holds '
            f'{_fmt_bytes(storage.nbytes)}'
        )
    if numel * itemsize > max(storage.nbytes, _MAX_EXPANDED_BYTES):
        return (
            f'has zero or overlapping strides {tuple(stride)} that would expand its storage '
            f'{storage.record!r} of {_fmt_bytes(storage.nbytes)} bytes into '
            f'{_fmt_bytes(numel * itemsize)} bytes'
        )
    return None


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    del requires_grad, backward_hooks, metadata
    problem = _layout_problem(storage, storage_offset, size, stride)
    if problem:
        return _BadTensor(problem)
    size, stride = tuple(size), tuple(stride)
    if math.prod(size) == 0:
        return np.zeros(size, storage.dtype)
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage.array[storage_offset:], shape=size, strides=tuple(s * itemsize for s in stride)
    )
    return np.array(view, order='C')  # not ascontiguousarray: it turns 0-d tensors into 1-d


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


class _RestrictedUnpickler(pickle._Unpickler):  # pure Python: see the module docstring
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, fileobj, archive, prefix, source):
        super().__init__(fileobj)
        self._archive = archive
        self._prefix = prefix
        self._source = source
        self._storages = {}
        byteorder = f'{prefix}byteorder'
        self._swap = (
            byteorder in archive.namelist() and archive.read(byteorder).decode().strip() == 'big'
        )

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == 'torch' and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeCheckpointError(
            f'{self._source}: refusing to load global {module}.{name} from the checkpoint pickle; '
            'only tensor-rebuild globals are allowed (the file may be malicious or not a '
            'LivePortrait checkpoint)'
        )

    def _load_build(self):
        # BUILD sets attributes; torch only uses it for an OrderedDict's `_metadata`. Anywhere else
        # it could rewrite a storage type's dtype after find_class vetted it.
        if not isinstance(self.stack[-2], _OrderedDict):
            raise UnsafeCheckpointError(
                f'{self._source}: refusing to set the state of a {type(self.stack[-2]).__name__} '
                'in the checkpoint pickle'
            )
        pickle._Unpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = _load_build

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == 'storage'):
            raise UnsafeCheckpointError(f'{self._source}: unsupported persistent id {pid!r}')
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(
                f'{self._source}: unsupported storage type {storage_type!r}'
            )
        storage = self._storages.get(key)
        if storage is None:
            storage = self._storages[key] = self._read_storage(key, storage_type.dtype, numel)
        if storage.dtype != storage_type.dtype or storage.array.size != numel:
            raise CheckpointError(
                f'{self._source}: storage {storage.record!r} is declared twice, '
                'with different types or element counts'
            )
        return storage

    def _read_storage(self, key, dtype, numel):
        record = f'{self._prefix}data/{key}'
        try:
            info = self._archive.getinfo(record)
        except KeyError:
            raise CheckpointError(
                f'{self._source}: storage record {record} is missing (truncated or corrupt archive)'
            ) from None
        if not _is_int(numel) or numel < 0:
            raise CheckpointError(
                f'{self._source}: storage {record!r} declares a malformed element count {numel!r}'
            )
        # Checked against the zip directory before reading, so a false count allocates nothing.
        if numel * dtype.itemsize != info.file_size:
            raise CheckpointError(
                f'{self._source}: storage {record!r} declares {numel} {dtype} elements '
                f'({_fmt_bytes(numel * dtype.itemsize)} bytes) but its record holds '
                f'{_fmt_bytes(info.file_size)} bytes'
            )
        raw = self._archive.read(record)
        if len(raw) != info.file_size:  # the directory's size can lie too
            raise CheckpointError(
                f'{self._source}: storage record {record} is truncated '
                f'({len(raw)} of {info.file_size} bytes)'
            )
        arr = np.frombuffer(raw, dtype=dtype)
        return _Storage(record, arr.byteswap() if self._swap else arr)


def _first_bad_tensor(tree):
    """(key path, _BadTensor) for the first bad tensor reachable in `tree`, or None.

    Iterative and visiting each container once: a pickle can nest deeply, share one dict many times
    (exponentially many paths) or contain itself.
    """
    stack, seen = [('', tree)], set()
    while stack:
        path, node = stack.pop()
        if isinstance(node, _BadTensor):
            return path or '<root>', node
        if not isinstance(node, (dict, list, tuple)) or id(node) in seen:
            continue
        seen.add(id(node))
        items = (
            [(str(k), v) for k, v in node.items()]
            if isinstance(node, dict)
            else [(str(i), v) for i, v in enumerate(node)]
        )
        stack.extend((f'{path}/{k}' if path else k, v) for k, v in reversed(items))
    return None


def _unpickle_checked(archive, pkl, prefix, path):
    result = _RestrictedUnpickler(io.BytesIO(archive.read(pkl)), archive, prefix, path).load()
    bad = _first_bad_tensor(result)
    if bad:
        name, tensor = bad
        raise CheckpointError(f'{path}: tensor {name!r} {tensor.problem}')
    return result


def load_torch_checkpoint(path):
    """Reads a `.pth` file written by `torch.save` into nested dicts of numpy arrays.

    Raises:
      CheckpointError: the file is missing, not a zip checkpoint, truncated or corrupt, or a
        tensor's or storage's declared size does not fit the data in the file.
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
        hint = (
            ' (legacy pre-1.6 torch.save format; re-save it with a recent PyTorch)'
            if head[:1] == b'\x80'
            else ' (truncated or corrupt?)'
        )
        raise CheckpointError(f'{path}: not a PyTorch zip checkpoint{hint}') from None
    with archive:
        pkls = [n for n in archive.namelist() if n.endswith('data.pkl')]
        if len(pkls) != 1:
            raise CheckpointError(
                f'{path}: expected one data.pkl record in the archive, found {len(pkls)}'
            )
        prefix = pkls[0][: -len('data.pkl')]
        try:
            return _unpickle_checked(archive, pkls[0], prefix, path)
        except CheckpointError:
            raise
        except Exception as e:  # a hostile or corrupt pickle fails in many ways; all mean "corrupt"
            raise CheckpointError(f'{path}: corrupt checkpoint ({type(e).__name__}: {e})') from None
