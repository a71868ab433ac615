"""The ComfyUI nodes, called directly (no ComfyUI needed) with tiny random weights."""

import jax
import numpy as np
import pytest

import liveportrait_jax as lp
from liveportrait_jax.integrations.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from liveportrait_jax.integrations.comfyui.nodes import (
    LivePortraitLoader,
    LivePortraitMotionScript,
    LivePortraitPipe,
    LivePortraitProcess,
    models_on_device,
    resolve_device,
)
from liveportrait_jax.pipeline.demo_media import astronaut, synth_driving_frames
from liveportrait_jax.weights.errors import CheckpointError

N_DRIVING = 3


@pytest.fixture(scope='module')
def pipe(tmp_path_factory):
    """The loader in demo mode on a folder without weights: tiny random models (shared, so that the
    jitted functions compile once for the whole module)."""
    missing = tmp_path_factory.mktemp('comfy') / 'no_weights_here'
    (p,) = LivePortraitLoader().load(
        weights_dir=str(missing),
        variant='human',
        dtype='float32',
        random_weights_if_missing=True,
        demo_config='tiny',
    )
    return p


@pytest.fixture(scope='module')
def source():
    return (astronaut().astype(np.float32) / 255.0)[None]  # ComfyUI IMAGE: (1, 512, 512, 3)


@pytest.fixture(scope='module')
def driving():
    return synth_driving_frames(N_DRIVING).astype(np.float32) / 255.0  # (3, 256, 256, 3)


@pytest.fixture(scope='module')
def single(pipe, source, driving):
    return LivePortraitProcess().process(pipe, source, driving)


def check_images(x, n, size):
    assert isinstance(x, np.ndarray) and x.dtype == np.float32
    assert x.shape == (n,) + tuple(size) + (3,)
    assert np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0


# ----------------------------------------------------------------------------------------------
# Registration and the INPUT_TYPES contract


def test_registration():
    assert set(NODE_CLASS_MAPPINGS) == set(NODE_DISPLAY_NAME_MAPPINGS)
    classes = set(NODE_CLASS_MAPPINGS.values())
    assert classes == {LivePortraitLoader, LivePortraitProcess, LivePortraitMotionScript}
    names = {NODE_CLASS_MAPPINGS[k]: v for k, v in NODE_DISPLAY_NAME_MAPPINGS.items()}
    assert names[LivePortraitLoader] == 'LivePortrait (JAX) Loader'
    assert names[LivePortraitProcess] == 'LivePortrait (JAX) Process'
    for cls in classes:
        assert callable(getattr(cls(), cls.FUNCTION))
        assert isinstance(cls.CATEGORY, str) and cls.CATEGORY
        assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES)


def test_loader_contract():
    spec = LivePortraitLoader.INPUT_TYPES()
    req, opt = spec['required'], spec.get('optional', {})
    assert req['weights_dir'][0] == 'STRING' and req['weights_dir'][1]['default'] == 'weights'
    assert list(req['variant'][0]) == ['human', 'animals']
    assert list(req['dtype'][0]) == ['float32', 'bfloat16', 'float16']
    assert req['dtype'][1]['default'] == 'float32'
    demo = req['random_weights_if_missing']
    assert demo[0] == 'BOOLEAN' and demo[1]['default'] is False
    assert list(opt['demo_config'][0]) == ['tiny', 'full']
    assert LivePortraitLoader.RETURN_TYPES == ('LIVEPORTRAITPIPE',)


def test_process_contract():
    spec = LivePortraitProcess.INPUT_TYPES()
    req = spec['required']
    assert list(req) == [
        'pipeline',
        'source_image',
        'driving_images',
        'dsize',
        'scale',
        'vx_ratio',
        'vy_ratio',
        'lip_zero',
        'eye_retargeting',
        'eyes_retargeting_multiplier',
        'lip_retargeting',
        'lip_retargeting_multiplier',
        'stitching',
        'relative',
    ]
    assert req['pipeline'] == ('LIVEPORTRAITPIPE',)
    assert req['source_image'] == ('IMAGE',)
    assert req['driving_images'] == ('IMAGE',)
    numbers = {  # name: (type, default, min, max)
        'dsize': ('INT', 512, 64, 2048),
        'scale': ('FLOAT', 2.3, 1.0, 4.0),
        'vx_ratio': ('FLOAT', 0.0, -1.0, 1.0),
        'vy_ratio': ('FLOAT', -0.125, -1.0, 1.0),
        'eyes_retargeting_multiplier': ('FLOAT', 1.0, 0.01, 10.0),
        'lip_retargeting_multiplier': ('FLOAT', 1.0, 0.01, 10.0),
    }
    for name, (kind, default, lo, hi) in numbers.items():
        t, conf = req[name]
        assert t == kind, name
        assert conf['default'] == default and type(conf['default']) is type(default), name
        assert (conf['min'], conf['max']) == (lo, hi), name
        assert lo <= default <= hi
    booleans = {
        'lip_zero': True,
        'eye_retargeting': False,
        'lip_retargeting': False,
        'stitching': True,
        'relative': True,
    }
    for name, default in booleans.items():
        t, conf = req[name]
        assert t == 'BOOLEAN' and conf['default'] is default, name
    device = spec['optional']['device']
    assert list(device[0]) == ['CPU', 'GPU'] and device[1]['default'] in ('CPU', 'GPU')
    assert set(spec['optional']) == {
        'device', 'faces', 'motion_smoothing', 'motion_smoothing_strength', 'motion_script',
        'script_mode',
    }  # fmt: skip
    assert LivePortraitProcess.RETURN_TYPES == ('IMAGE', 'IMAGE')
    assert LivePortraitProcess.RETURN_NAMES == ('cropped_images', 'full_images')
    assert LivePortraitProcess.FUNCTION == 'process'
    # The widget defaults are the process method's defaults too.
    import inspect

    params = inspect.signature(LivePortraitProcess.process).parameters
    for name, value in req.items():
        if len(value) > 1:
            assert params[name].default == value[1]['default'], name


# The seed ComfyUI LivePortrait node's option inputs and defaults, which this node keeps.
SEED_NODE_DEFAULTS = dict(
    dsize=512,
    scale=2.3,
    vx_ratio=0.0,
    vy_ratio=-0.125,
    lip_zero=True,
    eye_retargeting=False,
    eyes_retargeting_multiplier=1.0,
    lip_retargeting=False,
    lip_retargeting_multiplier=1.0,
    stitching=True,
    relative=True,
)


def test_option_inputs_are_the_seed_nodes_generated_from_the_schema():
    from liveportrait_jax.integrations.comfyui.nodes import OPTION_FIELDS
    from liveportrait_jax.pipeline.options import SCHEMA

    req = LivePortraitProcess.INPUT_TYPES()['required']
    defaults = {name: spec[1]['default'] for name, spec in req.items() if len(spec) > 1}
    assert defaults == SEED_NODE_DEFAULTS
    assert all(type(defaults[k]) is type(v) for k, v in SEED_NODE_DEFAULTS.items())
    steps = {
        'dsize': 1,
        'scale': 0.01,
        'vx_ratio': 0.001,
        'vy_ratio': 0.001,
        'eyes_retargeting_multiplier': 0.01,
        'lip_retargeting_multiplier': 0.01,
    }
    assert {name: req[name][1]['step'] for name in steps} == steps
    for name, field in OPTION_FIELDS.items():  # tooltips and ranges: the AnimateOptions schema's
        kind, conf = req[name]
        meta = SCHEMA[field].metadata
        assert conf['tooltip'] == meta['help'], name
        if kind != 'BOOLEAN':
            assert (conf['min'], conf['max'], conf['step']) == (
                meta['min'],
                meta['max'],
                meta['step'],
            ), name
        if name != 'lip_zero':  # the node's one default of its own (the reference CLI: False)
            assert conf['default'] == SCHEMA[field].default, name
    assert SCHEMA['flag_normalize_lip'].default is False


# ----------------------------------------------------------------------------------------------
# Loader


def test_loader_without_weights_fails_clearly(tmp_path):
    with pytest.raises(CheckpointError, match='liveportrait-jax convert') as e:
        LivePortraitLoader().load(str(tmp_path / 'absent'), 'human', 'float32', False)
    assert 'random_weights_if_missing' in str(e.value)


def test_loader_demo_mode(pipe):
    assert isinstance(pipe, LivePortraitPipe)
    assert pipe.models.random_weights and pipe.random_weights
    assert pipe.models.config.get('name') == 'tiny'
    assert pipe.variant == 'human' and not pipe.animals
    with pytest.raises(ValueError, match='dtype'):
        LivePortraitLoader().load('weights', 'human', 'float64', True)


def test_loader_loads_converted_weights(tiny_converted):
    (p,) = LivePortraitLoader().load(str(tiny_converted), 'human', 'bfloat16', False)
    assert not p.random_weights and p.models.dtype == jax.numpy.bfloat16


# ----------------------------------------------------------------------------------------------
# Process


def test_one_source(single):
    crops, full = single
    check_images(crops, N_DRIVING, (512, 512))  # the crops at dsize (tiny renders 128 px)
    check_images(full, N_DRIVING, (512, 512))  # the source's size
    # Random weights are labelled (white text on a black box, top left) in both outputs.
    for out in (crops, full):
        assert out[:, 2:6, 2:30].mean() < 0.25 and out[:, :30, :200].max() > 0.8
    assert not np.array_equal(full[0], full[1])  # the driving motion changes the frames


def test_batch_of_sources(pipe, source, driving, single):
    flipped = source[:, :, ::-1]
    crops, full = LivePortraitProcess().process(
        pipe, np.concatenate([source, flipped]), driving, device='CPU'
    )
    check_images(crops, 2 * N_DRIVING, (512, 512))
    check_images(full, 2 * N_DRIVING, (512, 512))
    # Source after source, each animated with every driving frame.
    np.testing.assert_array_equal(crops[:N_DRIVING], single[0])
    np.testing.assert_array_equal(full[:N_DRIVING], single[1])
    assert not np.array_equal(full[N_DRIVING:], full[:N_DRIVING])


def test_sizes_and_options(pipe, source, driving):
    """dsize sets the crop size; sources of different sizes (a list) give full images at the first
    source's size; uint8 inputs and the retargeting options are accepted."""
    small = np.asarray(__import__('cv2').resize(astronaut(), (320, 400)), np.float32) / 255.0
    crops, full = LivePortraitProcess().process(
        pipe,
        [source[0], small],
        (driving * 255).astype(np.uint8),
        dsize=256,
        scale=2.0,
        vy_ratio=-0.1,
        lip_zero=False,
        eye_retargeting=True,
        eyes_retargeting_multiplier=2.0,
        lip_retargeting=True,
        lip_retargeting_multiplier=0.5,
        stitching=False,
        relative=False,
    )
    check_images(crops, 2 * N_DRIVING, (256, 256))
    check_images(full, 2 * N_DRIVING, (512, 512))


def test_errors(pipe, source, driving):
    node = LivePortraitProcess()
    with pytest.raises(ValueError, match='driving_images is empty'):
        node.process(pipe, source, np.zeros((0, 256, 256, 3), np.float32))
    with pytest.raises(ValueError, match='driving_images is empty'):
        node.process(pipe, source, [])
    with pytest.raises(ValueError, match='source_image is empty'):
        node.process(pipe, np.zeros((0, 64, 64, 3), np.float32), driving)
    with pytest.raises(ValueError, match=r'dsize must be in \[64, 2048\]'):
        node.process(pipe, source, driving, dsize=32)
    with pytest.raises(ValueError, match='scale must be in'):
        node.process(pipe, source, driving, scale=5.0)
    with pytest.raises(ValueError, match='dsize must be an integer'):
        node.process(pipe, source, driving, dsize=256.5)
    with pytest.raises(ValueError, match='3 colour channels'):
        node.process(pipe, source[..., :2], driving)
    with pytest.raises(TypeError, match='LivePortrait \\(JAX\\) Loader'):
        node.process(object(), source, driving)
    with pytest.raises(ValueError, match='device must be one of'):
        node.process(pipe, source, driving, device='TPU')


def test_devices(pipe):
    cpu = resolve_device('CPU')
    assert cpu.platform == 'cpu' and resolve_device(None) is None
    assert pipe.models_on(cpu) is pipe.models  # already there: no copy
    if not any(d.platform == 'gpu' for d in jax.devices()):
        try:
            jax.devices('gpu')
        except RuntimeError:
            with pytest.raises(RuntimeError, match='no GPU backend'):
                resolve_device('GPU')
    copy = models_on_device(pipe.models, cpu)
    assert isinstance(copy, lp.LivePortraitModels) and copy.random_weights
    leaves = jax.tree.leaves(copy.states)
    assert leaves and all(x.devices() == {cpu} for x in leaves)


def test_torch_tensors(pipe, source, driving, single):
    torch = pytest.importorskip('torch')
    crops, full = LivePortraitProcess().process(
        pipe, torch.from_numpy(source), torch.from_numpy(driving)
    )
    assert isinstance(crops, torch.Tensor) and isinstance(full, torch.Tensor)
    assert crops.dtype == torch.float32 and full.dtype == torch.float32
    assert tuple(crops.shape) == (N_DRIVING, 512, 512, 3)
    assert tuple(full.shape) == (N_DRIVING, 512, 512, 3)
    np.testing.assert_array_equal(crops.numpy(), single[0])


def test_torch_conversion_without_torch(pipe, source, driving, single, monkeypatch):
    """The torch code path with a stand-in `torch` module (torch itself is not a test dependency):
    tensors are read with .detach().cpu().numpy() and the outputs come back via torch.from_numpy."""
    import sys
    import types

    class Tensor:
        def __init__(self, array):
            self.array = np.asarray(array)

        def detach(self):
            return self

        def cpu(self):
            return self

        def is_floating_point(self):
            return np.issubdtype(self.array.dtype, np.floating)

        def float(self):
            return Tensor(self.array.astype(np.float32))

        def numpy(self):
            return self.array

    Tensor.__module__ = 'torch'
    fake = types.ModuleType('torch')
    fake.Tensor = Tensor
    fake.from_numpy = Tensor
    monkeypatch.setitem(sys.modules, 'torch', fake)
    crops, full = LivePortraitProcess().process(
        pipe, Tensor(source.astype(np.float16)), Tensor(driving)
    )
    assert isinstance(crops, Tensor) and isinstance(full, Tensor)
    assert crops.array.dtype == np.float32 and full.array.shape == (N_DRIVING, 512, 512, 3)
    # float16 input: the same uint8 pixels up to rounding, so (nearly) the same animation.
    assert np.abs(crops.array - single[0]).mean() < 0.02


# ----------------------------------------------------------------------------------------------
# Motion scripts, several faces, steady motion


def test_motion_script_node_and_process(pipe, source, driving):
    spec = LivePortraitMotionScript.INPUT_TYPES()['required']
    assert spec['interpolation'][0] == ['smooth', 'linear']
    script, n = LivePortraitMotionScript().build(0.5, 8.0, 'smooth', '0:\n0.375: yaw=12, aaa=30')
    assert n == 4 and script.n_frames == 4 and script.sliders(3).head_yaw == 12
    whole, _ = LivePortraitMotionScript().build(
        1.0, 8.0, 'linear', '{duration: 0.25, keyframes: [{time: 0, smile: 0.5}]}'
    )
    assert whole.n_frames == 2 and whole.sliders(0).smile == 0.5
    with pytest.raises(ValueError, match="keyframes line 2 .*'yaw' is not control=value"):
        LivePortraitMotionScript().build(1.0, 8.0, 'smooth', '0:\n0.5: yaw')
    with pytest.raises(ValueError, match="unknown control 'nod'"):
        LivePortraitMotionScript().build(1.0, 8.0, 'smooth', '0.5: nod=1')
    crops, frames = LivePortraitProcess().process(pipe, source, driving, motion_script=script)
    check_images(frames, 4, (512, 512))  # the script's frames, driving_images ignored
    on_top = LivePortraitProcess().process(
        pipe, source, driving, motion_script=script, script_mode='on top of the driving images'
    )
    check_images(on_top[1], N_DRIVING, (512, 512))


def test_faces_and_smoothing_inputs(pipe, source, driving, single):
    opt = LivePortraitProcess.INPUT_TYPES()['optional']
    assert opt['faces'][0] == 'STRING' and opt['faces'][1]['default'] == ''
    assert opt['motion_smoothing'][0] == ['none', 'one-euro', 'kalman']
    steady = LivePortraitProcess().process(pipe, source, driving, motion_smoothing='kalman')
    check_images(steady[1], N_DRIVING, (512, 512))
    assert not np.array_equal(steady[1], single[1])
    one = LivePortraitProcess().process(pipe, source, driving, faces='all')  # one face here
    check_images(one[1], N_DRIVING, (512, 512))
    with pytest.raises(ValueError, match="faces must be 'all'"):
        LivePortraitProcess().process(pipe, source, driving, faces='first')
