"""Every notebook in notebooks/ is committed without outputs and runs without errors.

Each notebook is executed with nbclient in a fresh `python3` kernel, with the repository root as the
working directory (so a converted `weights/` folder there is used; without one the notebooks fall
back to random demo weights).
"""

import pathlib

import pytest

nbformat = pytest.importorskip('nbformat')
nbclient = pytest.importorskip('nbclient')

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / 'notebooks').glob('*.ipynb'))
TIMEOUT = 600  # seconds per cell


def _id(path):
    return path.name


def test_there_are_notebooks():
    assert NOTEBOOKS, 'no notebooks found in notebooks/'


@pytest.mark.parametrize('path', NOTEBOOKS, ids=_id)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == 'code'
        and (cell.get('outputs') or cell.get('execution_count') is not None)
    ]
    assert not dirty, (
        f'{path.name}: code cells {dirty} have outputs or execution counts; clear '
        f'them before committing (jupyter nbconvert --clear-output --inplace)'
    )
    assert nb.metadata.get('kernelspec', {}).get('name') == 'python3'


@pytest.mark.parametrize('path', NOTEBOOKS, ids=_id)
def test_runs_without_errors(path):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=TIMEOUT, kernel_name='python3', resources={'metadata': {'path': str(ROOT)}}
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f'{path.name} failed:\n{e}', pytrace=False)
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == 'code'
        for out in cell.get('outputs', [])
        if out.get('output_type') == 'error'
    ]
    assert not errors, errors
