"""atomic_write_path: outputs appear complete or not at all."""

import os
import stat

import pytest

from liveportrait_jax.io import AtomicPath, OutputError, atomic_write_path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_success_renames_temp_onto_final(tmp_path):
    final = tmp_path / 'out.mp4'
    with atomic_write_path(final) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)
        assert tmp.endswith('.mp4')  # encoders pick the format from the extension
        assert not final.exists()
        with open(tmp, 'wb') as f:
            f.write(b'done')
    assert final.read_bytes() == b'done'
    assert os.listdir(tmp_path) == ['out.mp4']
    assert stat.S_IMODE(final.stat().st_mode) == 0o666 & ~_umask()


def test_failure_leaves_nothing_and_keeps_old_file(tmp_path):
    final = tmp_path / 'out.png'
    with pytest.raises(RuntimeError, match='boom'):
        with atomic_write_path(final) as tmp:
            with open(tmp, 'wb') as f:
                f.write(b'half')
            raise RuntimeError('boom')
    assert os.listdir(tmp_path) == []

    final.write_bytes(b'old')
    with pytest.raises(KeyboardInterrupt):
        with atomic_write_path(final) as tmp:
            with open(tmp, 'wb') as f:
                f.write(b'new but partial')
            raise KeyboardInterrupt
    assert final.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['out.png']


def test_creates_missing_directories(tmp_path):
    final = tmp_path / 'a' / 'b' / 'x.txt'
    with atomic_write_path(final) as tmp:
        with open(tmp, 'w') as f:
            f.write('hi')
    assert final.read_text() == 'hi'


def test_directory_target_is_an_error(tmp_path):
    with pytest.raises(OutputError, match='is a directory'):
        AtomicPath(tmp_path)


def test_discard_is_idempotent(tmp_path):
    target = AtomicPath(tmp_path / 'y.bin')
    target.discard()
    target.discard()
    assert os.listdir(tmp_path) == []
