import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'
TINY = FIXTURES / 'tiny'


@pytest.fixture(scope='session')
def tiny_ref():
    """The reference's outputs on the tiny config, as {key: array} (reference layouts)."""
    with np.load(TINY / 'reference_outputs.npz') as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope='session')
def tiny_models():
    """The tiny fixture checkpoints loaded straight from the .pth files."""
    import liveportrait_jax as lp

    return lp.load_torch_models(TINY, 'tiny')


@pytest.fixture(scope='session')
def models():
    """RANDOM tiny models (seed 0), shared by every test that needs a model set but no weights."""
    import liveportrait_jax as lp

    return lp.init_random_models('tiny', seed=0)


def released_layout(root, src=TINY):
    """Lays the five fixture files out as the released pretrained_weights/ folder (symlinks)."""
    base = root / 'liveportrait' / 'base_models'
    retarget = root / 'liveportrait' / 'retargeting_models'
    base.mkdir(parents=True)
    retarget.mkdir(parents=True)
    for name in (
        'appearance_feature_extractor',
        'motion_extractor',
        'warping_module',
        'spade_generator',
    ):
        os.symlink(src / f'{name}.pth', base / f'{name}.pth')
    os.symlink(
        src / 'stitching_retargeting_module.pth', retarget / 'stitching_retargeting_module.pth'
    )
    return root


@pytest.fixture(scope='session')
def tiny_converted(tmp_path_factory):
    """The tiny fixtures converted with the converter, in its output layout."""
    from liveportrait_jax.weights.convert import convert

    root = tmp_path_factory.mktemp('convert')
    src = released_layout(root / 'pretrained_weights')
    dst = root / 'converted'
    convert(src, dst, log=lambda *a: None)
    return dst


def run_on_forced_host_devices(script, n, timeout=600):
    """Runs a Python script in a fresh process whose CPU backend has `n` devices; it must print ok.

    The device count is fixed when JAX starts, hence the subprocess.
    """
    env = dict(
        os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={n}', JAX_PLATFORMS='cpu'
    )
    res = subprocess.run(
        [sys.executable, '-c', script], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert res.returncode == 0 and 'ok' in res.stdout, res.stderr[-3000:]
