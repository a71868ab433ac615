"""Reading and writing .pth files without PyTorch, and strict loading's error reports."""

import os
import pickle
import tracemalloc
import zipfile

import numpy as np
import pytest
from conftest import TINY

from liveportrait_jax.weights import (
    CheckpointError,
    CheckpointMismatchError,
    UnsafeCheckpointError,
    load_torch_checkpoint,
)
from liveportrait_jax.weights.checkpoint import load_torch_networks
from liveportrait_jax.weights.torch_writer import _Emitter, save_torch_checkpoint


def _zip_with_pickle(path, payload):
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('archive/data.pkl', payload)
        z.writestr('archive/byteorder', 'little')


class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_hostile_pickle_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    _zip_with_pickle(path, pickle.dumps({'weight': _Hostile(marker)}, protocol=2))
    with pytest.raises(UnsafeCheckpointError) as e:
        load_torch_checkpoint(path)
    msg = str(e.value)
    assert str(path) in msg and 'system' in msg
    assert not marker.exists()


def test_hostile_raw_pickle_is_not_unpickled(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil_legacy.pth'
    path.write_bytes(pickle.dumps(_Hostile(marker), protocol=2))
    with pytest.raises(CheckpointError, match='not a PyTorch zip checkpoint'):
        load_torch_checkpoint(path)
    assert not marker.exists()


def test_truncated_archive(tmp_path):
    data = (TINY / 'appearance_feature_extractor.pth').read_bytes()
    path = tmp_path / 'appearance_feature_extractor.pth'
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        load_torch_checkpoint(path)
    assert str(path) in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match='not found'):
        load_torch_checkpoint(tmp_path / 'nope.pth')


def test_writer_round_trip(tmp_path):
    tree = {
        'a': {
            'module.mlp.0.weight': np.arange(12, dtype=np.float32).reshape(3, 4),
            'n': np.array(7, np.int64),
        },
        'b': {'x': np.ones((2, 1, 3), np.float16)},
    }
    path = save_torch_checkpoint(tmp_path / 'w.pth', tree)
    back = load_torch_checkpoint(path)
    assert back.keys() == tree.keys()
    for k in tree:
        for kk, v in tree[k].items():
            np.testing.assert_array_equal(back[k][kk], v)
            assert back[k][kk].dtype == v.dtype


def test_non_contiguous_tensor_is_rebuilt_with_strides(tmp_path):
    # A transposed tensor is stored with its original storage and permuted strides.
    sd = load_torch_checkpoint(TINY / 'stitching_retargeting_module.pth')
    w = sd['retarget_shoulder']['module.mlp.0.weight']
    assert w.shape == (128, 126) and w.flags['C_CONTIGUOUS'] and np.isfinite(w).all()


def _one_tensor_pth(path, size, stride, offset=0, numel=4, record_bytes=16):
    """A .pth holding {'a.weight': tensor} with the given metadata over one float32 storage.

    Written opcode by opcode (the project's writer only emits consistent tensors) so the pickle can
    lie about sizes the way a crafted file would.
    """
    em = _Emitter()
    em.op(pickle.PROTO, bytes([2]))
    em.empty_ordered_dict()
    em.op(pickle.MARK)
    em.string('a.weight')
    em.global_('torch._utils', '_rebuild_tensor_v2')
    em.op(pickle.MARK)
    em.op(pickle.MARK)  # persistent id: ('storage', type, key, location, numel)
    em.string('storage')
    em.global_('torch', 'FloatStorage')
    em.string('0')
    em.string('cpu')
    em.int(numel)
    em.op(pickle.TUPLE)
    em.op(pickle.BINPERSID)
    em.int(offset)
    em.int_tuple(size)
    em.int_tuple(stride)
    em.op(pickle.NEWFALSE)
    em.empty_ordered_dict()
    em.op(pickle.TUPLE)
    em.op(pickle.REDUCE)
    em.op(pickle.SETITEMS)
    em.op(pickle.STOP)
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('archive/data.pkl', em.out.getvalue())
        z.writestr('archive/byteorder', 'little')
        z.writestr('archive/data/0', bytes(record_bytes))
    return path


def _load_measuring_peak(path):
    """load_torch_checkpoint's CheckpointError message and the peak bytes allocated meanwhile."""
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError) as e:
            load_torch_checkpoint(path)
        return str(e.value), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    'size, stride, offset, expected',
    [
        (
            (1 << 40,),
            (1,),
            0,
            "tensor 'a.weight' needs 4.4e+12 bytes but its storage 'archive/data/0' holds 16",
        ),
        (
            (1 << 40,),
            (0,),
            0,
            (
                "tensor 'a.weight' has zero or overlapping strides (0,) that would "
                "expand its storage 'archive/data/0' of 16 bytes into 4.4e+12 bytes"
            ),
        ),
        ((4,), (1,), 1 << 40, "tensor 'a.weight' needs 4.4e+12 bytes"),
        ((2, 1 << 40), (1 << 40, 1), 0, "tensor 'a.weight' needs 8.8e+12 bytes"),
        ((-1,), (1,), 0, "tensor 'a.weight' has a negative size, stride or offset"),
        ((4,), (-1,), 3, "tensor 'a.weight' has a negative size, stride or offset"),
        ((1,) * 100, (1,) * 100, 0, "tensor 'a.weight' has 100 dimensions (at most 32"),
        ((4, 1), (1,), 0, "tensor 'a.weight' has 2 sizes but 1 strides"),
    ],
)
def test_tensor_larger_than_its_storage_is_refused_without_allocating(
    tmp_path, size, stride, offset, expected
):
    path = _one_tensor_pth(tmp_path / 'x.pth', size, stride, offset)
    msg, peak = _load_measuring_peak(path)
    assert msg.startswith(f'{path}: ') and expected in msg and '\n' not in msg
    assert peak < 1 << 20


def test_storage_count_must_match_its_record(tmp_path):
    path = _one_tensor_pth(tmp_path / 'x.pth', (1 << 40,), (1,), numel=1 << 40)
    msg, peak = _load_measuring_peak(path)
    assert msg == (
        f"{path}: storage 'archive/data/0' declares 1099511627776 float32 elements "
        '(4.4e+12 bytes) but its record holds 16 bytes'
    )
    assert peak < 1 << 20


def test_consistent_tensors_still_load(tmp_path):
    # A saved expand() view (stride 0) and an offset slice are legitimate and fit their storage.
    expanded = load_torch_checkpoint(_one_tensor_pth(tmp_path / 'e.pth', (3, 4), (0, 1)))
    np.testing.assert_array_equal(expanded['a.weight'], np.zeros((3, 4), np.float32))
    sliced = load_torch_checkpoint(_one_tensor_pth(tmp_path / 's.pth', (2,), (1,), offset=2))
    assert sliced['a.weight'].shape == (2,)
    empty = load_torch_checkpoint(_one_tensor_pth(tmp_path / 'z.pth', (0, 1 << 40), (1, 1)))
    assert empty['a.weight'].shape == (0, 1 << 40)


def test_pickle_claiming_a_huge_bytes_object_is_corrupt_not_a_memory_error(tmp_path):
    path = tmp_path / 'x.pth'
    _zip_with_pickle(path, b'\x80\x02\x8e' + (1 << 42).to_bytes(8, 'little') + b'abc.')
    msg, peak = _load_measuring_peak(path)
    assert msg.startswith(f'{path}: corrupt checkpoint') and peak < 1 << 20


def test_pickle_may_not_set_state_outside_state_dicts(tmp_path):
    # BUILD on a storage type could swap its vetted dtype for another after find_class.
    path = tmp_path / 'x.pth'
    _zip_with_pickle(path, b'\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeK\x01sb.')
    with pytest.raises(UnsafeCheckpointError, match='refusing to set the state of a _StorageType'):
        load_torch_checkpoint(path)


def _tiny_files(tmp_path, mutate=None):
    """The tiny checkpoints, rewritten with the project's writer after `mutate(F state dict)`."""
    files = {
        n: TINY / f'{n}.pth' for n in ('motion_extractor', 'warping_module', 'spade_generator')
    }
    files['stitching_retargeting_module'] = TINY / 'stitching_retargeting_module.pth'
    sd = load_torch_checkpoint(TINY / 'appearance_feature_extractor.pth')
    if mutate:
        mutate(sd)
    files['appearance_feature_extractor'] = save_torch_checkpoint(
        tmp_path / 'appearance_feature_extractor.pth', sd
    )
    return files


def test_rewritten_checkpoint_loads_identically(tmp_path):
    direct = load_torch_checkpoint(TINY / 'appearance_feature_extractor.pth')
    again = load_torch_checkpoint(_tiny_files(tmp_path)['appearance_feature_extractor'])
    assert direct.keys() == again.keys()
    for k in direct:
        np.testing.assert_array_equal(direct[k], again[k])


def test_wrong_shape_missing_and_unexpected_are_listed_together(tmp_path):
    def mutate(sd):
        sd['second.weight'] = sd['second.weight'][:, :-1]  # wrong shape
        del sd['first.norm.running_var']  # missing
        sd['first.extra.weight'] = np.zeros(3, np.float32)  # unexpected layer
        sd['first.conv.gamma'] = np.zeros(3, np.float32)  # unexpected tensor in a known layer

    files = _tiny_files(tmp_path, mutate)
    with pytest.raises(CheckpointMismatchError) as e:
        load_torch_networks(files, 'tiny')
    err = e.value
    msg = str(err)
    assert str(files['appearance_feature_extractor']) in msg
    assert any('first.norm.running_var' in m for m in err.missing)
    assert any('first.extra.weight' in u for u in err.unexpected)
    assert any('first.conv.gamma' in u for u in err.unexpected)
    assert any('second.kernel' in m for m in err.mismatched)


def test_tiny_checkpoints_do_not_fit_the_full_config():
    with pytest.raises(CheckpointMismatchError) as e:
        load_torch_networks(TINY, 'full')
    assert len(e.value.mismatched) > 10 and len(e.value.missing) > 10


def test_ddp_prefix_is_stripped():
    from liveportrait_jax.weights.strict import strip_ddp_prefix

    assert strip_ddp_prefix({'module.mlp.0.weight': 1, 'mlp.2.bias': 2}) == {
        'mlp.0.weight': 1,
        'mlp.2.bias': 2,
    }
