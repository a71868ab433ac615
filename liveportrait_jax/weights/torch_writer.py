"""Write `.pth` files that `torch.load(weights_only=True)` reads, without PyTorch.

Used to export fine-tuned heads back to the reference's layout and to build test checkpoints. The
pickle is emitted opcode by opcode because pickling a reference to `torch._utils._rebuild_tensor_v2`
normally requires importing torch; the archive layout is PyTorch's zip format:
`<name>/data.pkl`, `<name>/data/<storage key>`, `<name>/byteorder`, `<name>/version`.
"""

import io
import os
import pickle
import struct
import zipfile

import numpy as np

from liveportrait_jax.io.atomic import atomic_write_path

_STORAGE_NAMES = {
    np.dtype(np.float32): 'FloatStorage',
    np.dtype(np.float64): 'DoubleStorage',
    np.dtype(np.float16): 'HalfStorage',
    np.dtype(np.int64): 'LongStorage',
    np.dtype(np.int32): 'IntStorage',
    np.dtype(np.int16): 'ShortStorage',
    np.dtype(np.int8): 'CharStorage',
    np.dtype(np.uint8): 'ByteStorage',
    np.dtype(np.bool_): 'BoolStorage',
}


class _Emitter:
    def __init__(self):
        self.out = io.BytesIO()
        self.storages = []

    def op(self, code, payload=b''):
        self.out.write(code + payload)

    def string(self, s):
        b = s.encode('utf-8')
        self.op(pickle.BINUNICODE, struct.pack('<I', len(b)) + b)

    def int(self, v):
        if 0 <= v < 256:
            self.op(pickle.BININT1, bytes([v]))
        elif -(2**31) <= v < 2**31:
            self.op(pickle.BININT, struct.pack('<i', v))
        else:
            self.op(pickle.LONG1, bytes([8]) + struct.pack('<q', v))

    def global_(self, module, name):
        self.op(pickle.GLOBAL, f'{module}\n{name}\n'.encode())

    def int_tuple(self, values):
        self.op(pickle.MARK)
        for v in values:
            self.int(int(v))
        self.op(pickle.TUPLE)

    def empty_ordered_dict(self):
        self.global_('collections', 'OrderedDict')
        self.op(pickle.EMPTY_TUPLE)
        self.op(pickle.REDUCE)

    def tensor(self, array):
        array = np.ascontiguousarray(array)
        if array.dtype not in _STORAGE_NAMES:
            raise TypeError(f'cannot write arrays of dtype {array.dtype} to a .pth file')
        key = str(len(self.storages))
        self.storages.append(array)
        self.global_('torch._utils', '_rebuild_tensor_v2')
        self.op(pickle.MARK)
        # persistent id: ('storage', storage type, key, location, numel)
        self.op(pickle.MARK)
        self.string('storage')
        self.global_('torch', _STORAGE_NAMES[array.dtype])
        self.string(key)
        self.string('cpu')
        self.int(array.size)
        self.op(pickle.TUPLE)
        self.op(pickle.BINPERSID)
        self.int(0)  # storage offset
        self.int_tuple(array.shape)
        strides, acc = [], 1
        for n in reversed(array.shape):
            strides.append(acc)
            acc *= n
        self.int_tuple(reversed(strides))
        self.op(pickle.NEWFALSE)  # requires_grad
        self.empty_ordered_dict()  # backward hooks
        self.op(pickle.TUPLE)
        self.op(pickle.REDUCE)

    def value(self, v):
        if isinstance(v, dict):
            self.empty_ordered_dict()
            if v:
                self.op(pickle.MARK)
                for k, item in v.items():
                    self.string(str(k))
                    self.value(item)
                self.op(pickle.SETITEMS)
        elif isinstance(v, np.ndarray) or np.isscalar(v):
            self.tensor(np.asarray(v))
        else:
            raise TypeError(f'cannot write {type(v).__name__} to a .pth file')


def save_torch_checkpoint(path, tree, archive_name=None):
    """Writes nested dicts of numpy arrays as a PyTorch zip checkpoint, atomically.

    Args:
      path: the `.pth` file to write.
      tree: {str: array or nested dict}; arrays become tensors with contiguous strides.
      archive_name: the folder name inside the zip (PyTorch uses the file's stem).
    """
    path = os.fspath(path)
    name = archive_name or os.path.splitext(os.path.basename(path))[0]
    em = _Emitter()
    em.op(pickle.PROTO, bytes([2]))
    em.value(tree)
    em.op(pickle.STOP)
    with atomic_write_path(path) as tmp:
        with zipfile.ZipFile(tmp, 'w', zipfile.ZIP_STORED) as z:
            z.writestr(f'{name}/data.pkl', em.out.getvalue())
            z.writestr(f'{name}/byteorder', 'little')  # data is written little-endian
            for key, array in enumerate(em.storages):
                data = array.astype(array.dtype.newbyteorder('<'), copy=False).tobytes()
                z.writestr(f'{name}/data/{key}', data)
            z.writestr(f'{name}/version', '3\n')
    return path
