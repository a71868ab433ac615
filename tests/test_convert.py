"""`liveportrait-jax convert`: layouts, idempotence, atomicity, error messages."""

import json
import os

import pytest
from conftest import TINY, released_layout

import liveportrait_jax as lp
from liveportrait_jax.cli import main
from liveportrait_jax.weights.convert import convert
from liveportrait_jax.weights.errors import CheckpointError

QUIET = dict(log=lambda *a: None)


def test_released_layout_with_animals(tmp_path):
    src = released_layout(tmp_path / 'pretrained_weights')
    animals = src / 'liveportrait_animals' / 'base_models_v1.1'
    animals.mkdir(parents=True)
    for f in (src / 'liveportrait' / 'base_models').iterdir():
        os.symlink(os.readlink(f), animals / f.name)
    results = convert(src, tmp_path / 'out', **QUIET)
    assert {(r.variant, r.status, r.config) for r in results} == {
        ('human', 'converted', 'tiny'),
        ('animals', 'converted', 'tiny'),
    }
    meta = json.loads((tmp_path / 'out' / 'animals' / 'metadata.json').read_text())
    assert meta['variant'] == 'animals' and meta['config'] == 'tiny'
    assert set(meta['sources']) == {
        'appearance_feature_extractor',
        'motion_extractor',
        'warping_module',
        'spade_generator',
        'stitching_retargeting_module',
    }
    models = lp.load_models(tmp_path / 'out', variant='animals')
    assert not models.random_weights and models.config.name == 'tiny'


def test_rerun_is_a_no_op(tmp_path):
    src = released_layout(tmp_path / 'pw')
    dst = tmp_path / 'out'
    assert convert(src, dst, **QUIET)[0].status == 'converted'
    before = {p: p.stat().st_mtime_ns for p in dst.rglob('*')}
    assert convert(src, dst, **QUIET)[0].status == 'up to date'
    assert {p: p.stat().st_mtime_ns for p in dst.rglob('*')} == before


def test_flat_folder_and_cli(tmp_path, capsys):
    assert main(['convert', str(TINY), str(tmp_path / 'out')]) == 0
    assert 'human: converted' in capsys.readouterr().out
    assert (tmp_path / 'out' / 'human' / 'metadata.json').is_file()


def test_failed_conversion_leaves_nothing(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    for f in TINY.glob('*.pth'):
        os.symlink(f, src / f.name)
    os.remove(src / 'warping_module.pth')
    (src / 'warping_module.pth').write_bytes(b'PK\x03\x04 truncated')
    with pytest.raises(CheckpointError, match='warping_module.pth'):
        convert(src, tmp_path / 'out', **QUIET)
    assert not (tmp_path / 'out').exists() or not any((tmp_path / 'out').iterdir())


def test_cli_errors_name_the_problem(tmp_path, capsys):
    assert main(['convert', str(tmp_path / 'missing'), str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err
    assert 'missing' in err and 'not found' in err
    (tmp_path / 'empty').mkdir()
    assert main(['convert', str(tmp_path / 'empty'), str(tmp_path / 'out')]) == 2
    assert 'no LivePortrait checkpoints found' in capsys.readouterr().err


def test_flat_folder_missing_a_file_names_it(tmp_path, capsys):
    src = tmp_path / 'weights_src'
    src.mkdir()
    for f in TINY.glob('*.pth'):
        if f.name != 'spade_generator.pth':
            os.symlink(f, src / f.name)
    expected = f'{src}: found 4 of the 5 checkpoint files; missing: spade_generator.pth'
    with pytest.raises(CheckpointError) as e:
        convert(src, tmp_path / 'out', **QUIET)
    assert str(e.value) == expected
    assert main(['convert', str(src), str(tmp_path / 'out')]) == 2
    assert capsys.readouterr().err == f'liveportrait-jax convert: error: {expected}\n'
    assert not (tmp_path / 'out').exists()


def test_load_models_without_weights_says_how_to_get_them(tmp_path):
    with pytest.raises(CheckpointError) as e:
        lp.load_models(tmp_path / 'weights')
    assert 'liveportrait-jax convert' in str(e.value) and 'Hugging Face' in str(e.value)


def test_corrupt_metadata(tmp_path, tiny_converted):
    import shutil

    bad = tmp_path / 'set'
    shutil.copytree(tiny_converted / 'human', bad)
    (bad / 'metadata.json').write_text('{not json')
    with pytest.raises(CheckpointError, match='corrupt metadata'):
        lp.load_models(bad)
