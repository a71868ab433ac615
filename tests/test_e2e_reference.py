"""The whole pipeline against the reference's own pipeline (`LivePortraitPipeline.execute`).

fixtures/e2e/ holds 14 cases the reference ran with the tiny fixture checkpoints on public-domain
inputs (scikit-image's astronaut cut and moved), cropping off so that no face model is involved.
Each case runs here through the public `animate`, on the same files, as a user's call would: the
source and driving keypoints handed to W (x_d after stitching) must agree per frame, and so must
the last animated crop. An option dropped or misapplied anywhere between the call and W moves
the keypoints of the cases it touches (and their crops by 9-18 levels on average).

The image-driven cases need the reference's neutral-lip array (shared/reference/lip_array.npy);
it is not ours to commit, so it is read from ../shared and those cases are skipped without it.
"""

import json
import pathlib

import numpy as np
import pytest
from conftest import FIXTURES, TINY

import liveportrait_jax as lp
from liveportrait_jax.models.configs import get_config
from liveportrait_jax.pipeline import AnimateOptions, animate

E2E = FIXTURES / 'e2e'
CASES = json.loads((E2E / 'cases.json').read_text())
LIP_ARRAY = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'reference' / 'lip_array.npy'

# Measured on this machine: keypoints within 6e-7, crops within 1 level (mean < 0.001).
KEYPOINT_TOL = 1e-4
CROP_MAX_LEVELS = 2
CROP_MEAN_LEVELS = 0.05


@pytest.fixture(scope='module')
def reference_models():
    """The tiny fixture weights at 256 x 256 input, as the reference runs every model set."""
    config = get_config('tiny')
    config.input_size = 256
    return lp.load_torch_models(TINY, config)


def _image_driven(case):
    return case['driving'].endswith('.png')


@pytest.mark.parametrize('name', list(CASES))
def test_reference_pipeline_case(name, reference_models, tmp_path):
    case = CASES[name]
    lip_array = np.load(LIP_ARRAY) if LIP_ARRAY.exists() else None
    if lip_array is None and _image_driven(case):
        pytest.skip(f'needs the reference neutral-lip array {LIP_ARRAY}')
    ref = np.load(E2E / f'{name}.npz')
    result = animate(
        reference_models,
        str(E2E / case['source']),
        str(E2E / case['driving']),
        str(tmp_path),
        AnimateOptions(**case['options']),
        lip_array=lip_array,
        label='',
        progress=False,
        keep_frames=True,
    )
    n = case['frames']
    assert result.n_frames == n and len(result.crops) == n
    x_s = np.broadcast_to(result.x_s, ref['x_s'].shape)
    np.testing.assert_allclose(x_s, ref['x_s'], rtol=0, atol=KEYPOINT_TOL, err_msg='x_s')
    np.testing.assert_allclose(result.x_d, ref['x_d'], rtol=0, atol=KEYPOINT_TOL, err_msg='x_d')
    diff = np.abs(result.crops[-1].astype(np.int16) - ref['out_last'].astype(np.int16))
    assert diff.max() <= CROP_MAX_LEVELS and diff.mean() <= CROP_MEAN_LEVELS, (
        f'last crop: max {diff.max()} levels, mean {diff.mean():.4f}'
    )


def test_cases_cover_the_option_paths():
    """The fixtures exercise every motion option path the reference has (a guard on the data)."""
    seen = {k: {str(c['options'].get(k)) for c in CASES.values()} for k in (
        'flag_relative_motion', 'animation_region', 'flag_stitching', 'driving_option',
        'driving_multiplier')}  # fmt: skip
    assert {'exp', 'pose', 'lip', 'eyes'} <= seen['animation_region']
    assert 'False' in seen['flag_relative_motion'] and 'False' in seen['flag_stitching']
    assert 'pose-friendly' in seen['driving_option'] and '1.5' in seen['driving_multiplier']
    kinds = {(c['source'][-3:], c['driving'][-3:]) for c in CASES.values()}
    assert kinds == {('png', 'mp4'), ('png', 'pkl'), ('png', 'png'), ('mp4', 'mp4'), ('mp4', 'png')}
