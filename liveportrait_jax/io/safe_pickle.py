"""Load pickles that may only contain numeric numpy arrays/scalars, numbers, strings and containers.

pickle.load runs whatever callables the file names (os.system, eval, ...), so a motion template
downloaded from the internet could execute code. Two layers stop that:

1. find_class resolves only an allow-list of globals (numpy's array/scalar/dtype rebuild functions,
   plain container types) and refuses every other one before anything is called.
2. Even allowed numpy objects can be abused: a dtype's pickled state can set internal flags claiming
   that a float array holds Python object pointers, which leads numpy to dereference raw bytes. So
   dtypes are limited to numeric kinds, and the BUILD opcode (which calls __setstate__) is checked:
   a dtype's state must be the standard one for its type (byte order may differ), an array's state
   must hold raw bytes of a numeric dtype, and BUILD on anything else is refused.

The pure-Python unpickler is used because only it lets us hook BUILD; templates are small, so speed
does not matter.
"""

from __future__ import annotations

import collections
import importlib
import io
import os
import pickle
import warnings

import numpy as np

from .errors import InputError, UnsafePickleError, check_input_file, describe

_NUMERIC_KINDS = 'biufc'  # bool, int, uint, float, complex

# numpy 1.x pickles name "numpy.core.<mod>", numpy 2.x "numpy._core.<mod>"; accept both and resolve
# to whichever module the installed numpy provides.
_NUMPY_PRIVATE = {
    'multiarray': {'_reconstruct', 'scalar'},
    'numeric': {'_frombuffer'},  # protocol-5 array pickles
}


def _numpy_private(submodule: str, name: str):
    for package in ('numpy._core', 'numpy.core'):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')  # numpy 2 warns on the deprecated numpy.core alias
                module = importlib.import_module(f'{package}.{submodule}')
            return getattr(module, name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f'numpy provides no {submodule}.{name}')


class _Refused(Exception):
    """Raised inside the unpickler; turned into UnsafePickleError naming the file."""


def _safe_dtype(obj, align=False, copy=False):
    # Only simple type codes such as 'f4', '<i8'; no object, structured, void or string dtypes.
    if not isinstance(obj, str):
        raise _Refused(f'a dtype built from a {type(obj).__name__}')
    dt = np.dtype(obj, bool(align), True)  # always a private copy, never numpy's shared instance
    if dt.kind not in _NUMERIC_KINDS:
        raise _Refused(f'the non-numeric dtype {obj!r}')
    return dt


def _safe_reconstruct(subtype, shape, dtype_code):
    if subtype is not np.ndarray:
        raise _Refused(f'array subtype {subtype!r}')
    return _numpy_private('multiarray', '_reconstruct')(np.ndarray, shape, dtype_code)


def _safe_scalar(dtype, *args):
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS:
        raise _Refused(f'scalar of dtype {dtype!r}')
    return _numpy_private('multiarray', 'scalar')(dtype, *args)


def _safe_frombuffer(buf, dtype, shape, order):
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS:
        raise _Refused(f'buffer array of dtype {dtype!r}')
    return _numpy_private('numeric', '_frombuffer')(buf, dtype, shape, order)


def _safe_encode(text, encoding='utf-8', errors='strict'):
    # Only the latin-1 round trip that protocol <= 2 uses for bytes: other codec names would make
    # Python import codec modules by name.
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1') or errors != 'strict':
        raise _Refused(f'_codecs.encode with encoding {encoding!r}')
    return text.encode('latin1')


_WRAPPED = {
    '_reconstruct': _safe_reconstruct,
    'scalar': _safe_scalar,
    '_frombuffer': _safe_frombuffer,
}

_ALLOWED_PLAIN = {
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): _safe_dtype,
    # Protocol <= 2 pickles store bytes as latin-1 text plus a call to _codecs.encode (a data codec).
    ('_codecs', 'encode'): _safe_encode,
    ('collections', 'OrderedDict'): collections.OrderedDict,
}
# Container constructors old protocols name as globals (py3 'builtins', py2 '__builtin__').
_ALLOWED_BUILTINS = {'set', 'frozenset', 'list', 'dict', 'tuple', 'bytearray', 'bytes', 'complex'}


def _check_dtype_state(dt: np.dtype, state) -> None:
    standard = dt.__reduce__()[2]
    if (
        not isinstance(state, tuple)
        or len(state) != len(standard)
        or state[0] != standard[0]
        or state[1] not in ('<', '>', '|', '=')
        or tuple(state[2:]) != tuple(standard[2:])
    ):
        raise _Refused(f'a non-standard state for dtype {dt} ({state!r})')


def _check_array_state(state) -> None:
    if not isinstance(state, tuple) or len(state) != 5:
        raise _Refused('a malformed array state')
    dtype, data = state[2], state[4]
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS:
        raise _Refused(f'an array state with dtype {dtype!r}')
    if not isinstance(data, (bytes, bytearray)):
        raise _Refused('an array state without raw bytes')


class _RestrictedUnpickler(
    pickle._Unpickler
):  # pure-Python version: its opcode table can be hooked
    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str):
        for package in ('numpy.core.', 'numpy._core.'):
            if module.startswith(package):
                sub = module[len(package) :]
                if name in _NUMPY_PRIVATE.get(sub, ()):
                    return _WRAPPED[name]
        if (module, name) in _ALLOWED_PLAIN:
            return _ALLOWED_PLAIN[(module, name)]
        if module in ('builtins', '__builtin__') and name in _ALLOWED_BUILTINS:
            return getattr(importlib.import_module('builtins'), name)
        raise _Refused(f"the global '{module}.{name}'")

    def persistent_load(self, pid):
        raise _Refused('a persistent id')

    def _load_build(self):
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, np.dtype):
            _check_dtype_state(inst, state)
        elif type(inst) is np.ndarray:
            _check_array_state(state)
        else:
            raise _Refused(f'setting the state of a {type(inst).__name__}')
        pickle._Unpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = _load_build


def safe_load_bytes(data: bytes, source: str = '<bytes>'):
    """Unpickle `data` under the rules above; `source` names the origin in errors."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except _Refused as e:
        raise UnsafePickleError(
            f'{source}: refused to load pickle: it uses {e}, which is not allowed (only numeric numpy '
            'arrays and plain containers are accepted); the file may be malicious or not a motion '
            'template, and nothing in it was executed'
        ) from None
    except RecursionError:
        raise InputError(f'{source}: pickle is nested too deeply') from None
    except (
        Exception
    ) as e:  # corrupt data surfaces as many exception types (EOFError, KeyError, ...)
        raise InputError(
            f'{source}: not a valid pickle or truncated/corrupt ({type(e).__name__}: {e})'
        ) from e


def safe_load(path: os.PathLike | str):
    """Unpickle a file under the rules above; InputError naming the file on any problem."""
    name = describe(path)
    p = check_input_file(path, 'pickle')
    try:
        with open(p, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise InputError(f'{name}: cannot read file: {e}') from e
    return safe_load_bytes(data, name)
