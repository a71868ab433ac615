"""Reading and writing .pth files without PyTorch, and strict loading's error reports."""

import os
import pickle
import zipfile

import numpy as np
import pytest

from conftest import TINY
from liveportrait_jax.weights import (
    CheckpointError, CheckpointMismatchError, UnsafeCheckpointError, load_torch_checkpoint)
from liveportrait_jax.weights.checkpoint import load_torch_model_set
from liveportrait_jax.weights.torch_writer import save_torch_checkpoint


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
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        load_torch_checkpoint(path)
    assert str(path) in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match='not found'):
        load_torch_checkpoint(tmp_path / 'nope.pth')


def test_writer_round_trip(tmp_path):
    tree = {'a': {'module.mlp.0.weight': np.arange(12, dtype=np.float32).reshape(3, 4),
                  'n': np.array(7, np.int64)},
            'b': {'x': np.ones((2, 1, 3), np.float16)}}
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


def _tiny_files(tmp_path, mutate=None):
    """The tiny checkpoints, rewritten with the project's writer after `mutate(F state dict)`."""
    files = {n: TINY / f'{n}.pth' for n in ('motion_extractor', 'warping_module',
                                            'spade_generator')}
    files['stitching_retargeting_module'] = TINY / 'stitching_retargeting_module.pth'
    sd = load_torch_checkpoint(TINY / 'appearance_feature_extractor.pth')
    if mutate:
        mutate(sd)
    files['appearance_feature_extractor'] = save_torch_checkpoint(
        tmp_path / 'appearance_feature_extractor.pth', sd)
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
        load_torch_model_set(files, 'tiny')
    err = e.value
    msg = str(err)
    assert str(files['appearance_feature_extractor']) in msg
    assert any('first.norm.running_var' in m for m in err.missing)
    assert any('first.extra.weight' in u for u in err.unexpected)
    assert any('first.conv.gamma' in u for u in err.unexpected)
    assert any('second.kernel' in m for m in err.mismatched)


def test_tiny_checkpoints_do_not_fit_the_full_config():
    with pytest.raises(CheckpointMismatchError) as e:
        load_torch_model_set(TINY, 'full')
    assert len(e.value.mismatched) > 10 and len(e.value.missing) > 10


def test_ddp_prefix_is_stripped():
    from liveportrait_jax.weights.strict import strip_ddp_prefix
    assert strip_ddp_prefix({'module.mlp.0.weight': 1, 'mlp.2.bias': 2}) == {
        'mlp.0.weight': 1, 'mlp.2.bias': 2}
