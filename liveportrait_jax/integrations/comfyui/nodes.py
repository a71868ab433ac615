"""ComfyUI nodes: "LivePortrait (JAX) Loader" and "LivePortrait (JAX) Process".

The process node's inputs follow the widely used ComfyUI LivePortrait node (same names and
defaults) and are generated from the `AnimateOptions` schema (help, ranges) through OPTION_FIELDS.

ComfyUI's IMAGE is a float tensor (B, H, W, 3) in [0, 1]. Every source image of the source batch is
animated with all the driving frames (the driving batch is a driving video); the outputs hold one
frame per driving frame per source image, source after source. The nodes also take numpy arrays
(and lists of per-image arrays) and then return numpy arrays; torch is imported only when the inputs
are torch tensors. Only the option schema is imported with this module; the rest on first use.
"""

import contextlib
import dataclasses
import functools
import importlib.metadata
import inspect
from typing import Any, Optional

import numpy as np

from liveportrait_jax.pipeline.options import SCHEMA, AnimateOptions, options_from_values

CATEGORY = 'LivePortrait (JAX)'
PIPE_TYPE = 'LIVEPORTRAITPIPE'
VARIANTS = ['human', 'animals']
DTYPES = ['float32', 'bfloat16', 'float16']
DEMO_CONFIGS = ['tiny', 'full']
DEVICES = ['CPU', 'GPU']


# ----------------------------------------------------------------------------------------------
# The pipeline object passed between the nodes


@dataclasses.dataclass(eq=False)
class LivePortraitPipe:
    """What the loader hands to the process node (ComfyUI type LIVEPORTRAITPIPE).

    models: LivePortraitModels (converted or random weights); variant: 'human' or 'animals' (animals
    crops the source with the cat-face detector); options: the AnimateOptions defaults the process
    node's inputs are applied onto; chunk: frames per device batch; label: text burned into every
    output frame (None: a warning for random weights, nothing for real ones).
    """

    models: Any
    variant: str = 'human'
    options: Any = None
    chunk: int = 8
    label: Optional[str] = None
    _on_device: dict = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.options is None:
            self.options = AnimateOptions()

    @property
    def animals(self):
        return self.variant == 'animals'

    @property
    def random_weights(self):
        return bool(getattr(self.models, 'random_weights', False))

    def models_on(self, device):
        """The models with their weights on `device` (None: as loaded); copies are cached."""
        if device is None or _all_on(self.models.states, device):
            return self.models
        key = (device.platform, device.id)
        if key not in self._on_device:
            self._on_device[key] = models_on_device(self.models, device)
        return self._on_device[key]


def _all_on(tree, device):
    import jax

    return all(getattr(x, 'devices', lambda: {device})() == {device} for x in jax.tree.leaves(tree))


def models_on_device(models, device):
    """A LivePortraitModels sharing `models`' graphs, with its weights copied onto `device`."""
    import jax
    from flax import nnx

    from liveportrait_jax import LivePortraitModels

    networks = {
        name: nnx.merge(models.graphdefs[name], jax.device_put(models.states[name], device))
        for name in models.graphdefs
    }
    return LivePortraitModels(
        networks,
        models.config,
        dtype=models.dtype,
        random_weights=models.random_weights,
        source=models.source,
    )


# ----------------------------------------------------------------------------------------------
# Loader


class LivePortraitLoader:
    """Loads converted LivePortrait weights (or random demo weights) into a LIVEPORTRAITPIPE."""

    DESCRIPTION = (
        'Loads LivePortrait weights converted with `liveportrait-jax convert` '
        '(folder with human/ and animals/ sets). With random_weights_if_missing, a '
        'missing folder gives RANDOM weights instead: the outputs are noise, labelled '
        'as such, for trying the workflow only.'
    )
    RETURN_TYPES = (PIPE_TYPE,)
    RETURN_NAMES = ('pipeline',)
    FUNCTION = 'load'
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {
            'required': {
                'weights_dir': (
                    'STRING',
                    {
                        'default': 'weights',
                        'multiline': False,
                        'tooltip': 'output folder of `liveportrait-jax convert` (absolute, or relative '
                        'to the directory ComfyUI was started from)',
                    },
                ),
                'variant': (VARIANTS, {'default': 'human'}),
                'dtype': (
                    DTYPES,
                    {
                        'default': 'float32',
                        'tooltip': 'compute dtype of the convolutions; half precision is for GPUs',
                    },
                ),
                'random_weights_if_missing': (
                    'BOOLEAN',
                    {
                        'default': False,
                        'tooltip': 'no converted weights found: use RANDOM demo weights (outputs are '
                        'noise, labelled) instead of failing',
                    },
                ),
            },
            'optional': {
                'demo_config': (
                    DEMO_CONFIGS,
                    {
                        'default': 'tiny',
                        'tooltip': 'size of the random demo networks (tiny: fast, 128 px renders)',
                    },
                ),
            },
        }

    def load(
        self,
        weights_dir='weights',
        variant='human',
        dtype='float32',
        random_weights_if_missing=False,
        demo_config='tiny',
    ):
        from liveportrait_jax.demo import load_models_or_demo
        from liveportrait_jax.weights.errors import CheckpointError

        for name, value, allowed in (
            ('variant', variant, VARIANTS),
            ('dtype', dtype, DTYPES),
            ('demo_config', demo_config, DEMO_CONFIGS),
        ):
            if value not in allowed:
                raise ValueError(f'{name} must be one of {allowed}, got {value!r}')
        try:
            models = load_models_or_demo(
                weights_dir,
                variant=variant,
                dtype=dtype,
                fallback=random_weights_if_missing,
                demo_config=demo_config,
            )
        except CheckpointError as e:
            raise CheckpointError(
                f'{e}\n(LivePortrait (JAX) Loader: or enable random_weights_if_missing to try '
                f'the workflow with random demo weights)'
            ) from None
        return (LivePortraitPipe(models, variant=variant),)


# ----------------------------------------------------------------------------------------------
# Process


def _is_torch(x):
    return type(x).__module__.split('.')[0] == 'torch'


def _to_numpy(x):
    if _is_torch(x):
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.float()  # float16/bfloat16 tensors (numpy has no bfloat16)
        return x.numpy()
    return np.asarray(x)


def _as_uint8(a, what):
    """One image (H, W, C) or a batch (B, H, W, C) -> uint8 RGB, same leading shape."""
    if a.ndim not in (3, 4):
        raise ValueError(
            f'{what}: expected an IMAGE (B, H, W, 3) or (H, W, 3), got shape {a.shape}'
        )
    c = a.shape[-1]
    if c == 4:
        a = a[..., :3]  # RGBA: drop alpha
    elif c == 1:
        a = np.repeat(a, 3, axis=-1)
    elif c != 3:
        raise ValueError(
            f'{what}: expected 3 colour channels last (B, H, W, 3), got shape {a.shape}'
        )
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f'{what}: expected float images in [0, 1], got dtype {a.dtype}')
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError(f'{what}: contains NaN or infinite values')
    return np.ascontiguousarray(np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8))


def _images(x, what):
    """An IMAGE batch, one image, or a list/tuple of either -> list of (H, W, 3) uint8."""
    if isinstance(x, (list, tuple)):
        out = []
        for item in x:
            out.extend(_images(item, what))
        return out
    a = _as_uint8(_to_numpy(x), what)
    return [a] if a.ndim == 3 else list(a)


def _resize(img, hw):
    import cv2

    h, w = hw
    if img.shape[:2] == (h, w):
        return img
    shrink = h < img.shape[0] and w < img.shape[1]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


@functools.lru_cache(maxsize=1)
def _gpu_jax_installed():
    """True when a CUDA/ROCm JAX plugin or jaxlib build is installed (no backend is started)."""
    try:
        if any(s in importlib.metadata.version('jaxlib') for s in ('+cuda', '+rocm')):
            return True
    except importlib.metadata.PackageNotFoundError:
        pass
    for dist in importlib.metadata.distributions():
        name = (dist.metadata.get('Name') or '').lower().replace('_', '-')
        if name.startswith(('jax-cuda', 'jax-rocm')):
            return True
    return False


def resolve_device(name):
    """'CPU' / 'GPU' -> the first jax device of that platform; None or '' -> None (the default)."""
    if name is None or name == '':
        return None
    import jax

    key = str(name).strip().upper()
    if key not in DEVICES:
        raise ValueError(f'device must be one of {DEVICES}, got {name!r}')
    try:
        devices = jax.devices(key.lower())
    except RuntimeError as e:
        raise RuntimeError(
            f'device {key!r} requested, but this JAX has no {key} backend ({e}). Install a '
            f'GPU-enabled JAX into the Python that runs ComfyUI (for NVIDIA: pip install '
            f'"jax[cuda12]=={jax.__version__}"), or choose device CPU.'
        ) from None
    if not devices:
        raise RuntimeError(
            f'device {key!r} requested, but JAX lists no {key} devices; choose another device.'
        )
    return devices[0]


# The process node's option inputs and the AnimateOptions field each one sets.
OPTION_FIELDS = {
    'dsize': 'dsize',
    'scale': 'scale',
    'vx_ratio': 'vx_ratio',
    'vy_ratio': 'vy_ratio',
    'lip_zero': 'flag_normalize_lip',
    'eye_retargeting': 'flag_eye_retargeting',
    'eyes_retargeting_multiplier': 'eyes_retargeting_multiplier',
    'lip_retargeting': 'flag_lip_retargeting',
    'lip_retargeting_multiplier': 'lip_retargeting_multiplier',
    'stitching': 'flag_stitching',
    'relative': 'flag_relative_motion',
}
# Optional inputs (workflows saved before they existed keep working): several faces, steady motion.
OPTIONAL_OPTION_FIELDS = {
    'faces': 'faces',
    'motion_smoothing': 'motion_smoothing',
    'motion_smoothing_strength': 'motion_smoothing_strength',
}
# Where the ComfyUI node's default differs from the reference CLI's: it starts from closed lips.
NODE_DEFAULTS = {'lip_zero': True}
SCRIPT_TYPE = 'LP_MOTION_SCRIPT'
SCRIPT_MODES = ('drive', 'on top of the driving images')


def _option_input(name):
    """The ComfyUI input spec of option input `name`, from the AnimateOptions schema."""
    field = SCHEMA[OPTION_FIELDS.get(name) or OPTIONAL_OPTION_FIELDS[name]]
    conf = {'default': NODE_DEFAULTS.get(name, field.default), 'tooltip': field.metadata['help']}
    if field.type is bool:
        return 'BOOLEAN', conf
    if field.metadata['choices']:
        return list(field.metadata['choices']), conf
    if field.type is str:
        return 'STRING', conf
    conf.update({k: field.metadata[k] for k in ('min', 'max', 'step')})
    return ('INT' if field.type is int else 'FLOAT'), conf


_D = {name: _option_input(name)[1]['default'] for name in (*OPTION_FIELDS, *OPTIONAL_OPTION_FIELDS)}


class LivePortraitProcess:
    """Animates every source image with the driving frames: animated crops and full frames."""

    DESCRIPTION = (
        'Animates each source image with all the driving frames (a driving video as an '
        'IMAGE batch). cropped_images: the animated face crops at dsize; full_images: '
        "the crops pasted back into the source, at the first source image's size. "
        'One output frame per driving frame per source image.'
    )
    RETURN_TYPES = ('IMAGE', 'IMAGE')
    RETURN_NAMES = ('cropped_images', 'full_images')
    FUNCTION = 'process'
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {
            'required': {
                'pipeline': (PIPE_TYPE,),
                'source_image': ('IMAGE',),
                'driving_images': ('IMAGE',),
                **{name: _option_input(name) for name in OPTION_FIELDS},
            },
            'optional': {
                'device': (
                    DEVICES,
                    {
                        'default': 'GPU' if _gpu_jax_installed() else 'CPU',
                        'tooltip': 'JAX device to run on (GPU needs a CUDA/ROCm build of JAX)',
                    },
                ),
                **{name: _option_input(name) for name in OPTIONAL_OPTION_FIELDS},
                'motion_script': (
                    SCRIPT_TYPE,
                    {
                        'tooltip': 'keyframed motion from the "LivePortrait (JAX) Motion Script" node'
                    },
                ),
                'script_mode': (
                    list(SCRIPT_MODES),
                    {
                        'default': SCRIPT_MODES[0],
                        'tooltip': 'drive: the script alone moves the source (driving_images '
                        'ignored); on top: its edits add to the driving motion',
                    },
                ),
            },
        }

    def process(
        self,
        pipeline,
        source_image,
        driving_images,
        dsize=_D['dsize'],
        scale=_D['scale'],
        vx_ratio=_D['vx_ratio'],
        vy_ratio=_D['vy_ratio'],
        lip_zero=_D['lip_zero'],
        eye_retargeting=_D['eye_retargeting'],
        eyes_retargeting_multiplier=_D['eyes_retargeting_multiplier'],
        lip_retargeting=_D['lip_retargeting'],
        lip_retargeting_multiplier=_D['lip_retargeting_multiplier'],
        stitching=_D['stitching'],
        relative=_D['relative'],
        device=None,
        faces=_D['faces'],
        motion_smoothing=_D['motion_smoothing'],
        motion_smoothing_strength=_D['motion_smoothing_strength'],
        motion_script=None,
        script_mode=SCRIPT_MODES[0],
    ):
        inputs = locals()
        if not isinstance(pipeline, LivePortraitPipe):
            raise TypeError(
                f'pipeline must come from the "LivePortrait (JAX) Loader" node, got '
                f'{type(pipeline).__name__} (another LivePortrait node pack?)'
            )
        # Validated by the schema before any work (its errors name the field: the numeric inputs
        # have the fields' names).
        fields = {**OPTION_FIELDS, **OPTIONAL_OPTION_FIELDS}
        options = options_from_values(
            {field: inputs[name] for name, field in fields.items()},
            base=pipeline.options,
            flag_do_crop=True,
            flag_pasteback=True,
        )
        as_torch = _is_torch(source_image) or (
            isinstance(source_image, (list, tuple)) and any(_is_torch(s) for s in source_image)
        )

        sources = _images(source_image, 'source_image')
        if not sources:
            raise ValueError('source_image is empty: give at least one source image')
        driving = _images(driving_images, 'driving_images')
        if not driving:
            raise ValueError(
                'driving_images is empty: give at least one driving frame (a '
                'driving image, or the frames of a driving video as a batch)'
            )
        driving = np.stack([_resize(f, driving[0].shape[:2]) for f in driving])
        if script_mode not in SCRIPT_MODES:
            raise ValueError(f'script_mode must be one of {SCRIPT_MODES}, got {script_mode!r}')
        on_top = None
        if motion_script is not None:
            if not hasattr(motion_script, 'edit_arrays'):
                raise TypeError('motion_script must come from the "LivePortrait (JAX) Motion '
                                f'Script" node, got {type(motion_script).__name__}')  # fmt: skip
            if script_mode == SCRIPT_MODES[0]:
                driving = motion_script
            else:
                on_top = motion_script
        crops, frames = self._run(
            pipeline, sources, driving, options, resolve_device(device), on_top
        )

        crops = np.concatenate(crops).astype(np.float32) / 255.0
        frames = np.concatenate(frames).astype(np.float32) / 255.0
        if as_torch:
            import torch

            return torch.from_numpy(crops), torch.from_numpy(frames)
        return crops, frames

    @staticmethod
    def _run(pipeline, sources, driving, options, device, motion_script=None):
        import jax

        from liveportrait_jax.demo import output_label
        from liveportrait_jax.pipeline import animate_frames
        from liveportrait_jax.pipeline.animation import burn_label

        label = output_label(pipeline.models, pipeline.label)
        full_hw = sources[0].shape[:2]  # ComfyUI batches hold one size: the first source's
        d = options.dsize
        kwargs = {}
        if device is not None and 'devices' in inspect.signature(animate_frames).parameters:
            kwargs['devices'] = [device]
        n_driving = driving.n_frames if hasattr(driving, 'n_frames') else len(driving)
        bar = _progress_bar(len(sources) * n_driving)
        crops, frames = [], []
        # Entering jax.default_device changes the jit cache key (everything compiles again), so
        # only do it when the device is not already JAX's default.
        ctx = contextlib.nullcontext()
        if device is not None and device != _default_device():
            ctx = jax.default_device(device)
        with ctx, _stop_on_comfy_interrupt():
            models = pipeline.models_on(device)
            for i, src in enumerate(sources):
                try:
                    res = animate_frames(
                        models,
                        src[None],
                        driving,
                        options,
                        chunk=max(1, min(int(pipeline.chunk), n_driving)),
                        animals=pipeline.animals,
                        label=label or '',
                        motion_script=motion_script,
                        **kwargs,
                    )
                except ValueError as e:  # no face, unreadable input: say which source image
                    if len(sources) == 1:
                        raise
                    raise ValueError(f'source image {i + 1} of {len(sources)}: {e}') from e
                c = [_resize(x, (d, d)) for x in res.crops]
                if label:
                    c = [burn_label(x, label) for x in c]
                crops.append(np.stack(c))
                frames.append(np.stack([_resize(f, full_hw) for f in res.frames]))
                if bar is not None:
                    bar.update(res.n_frames)
        return crops, frames


@contextlib.contextmanager
def _stop_on_comfy_interrupt():
    """ComfyUI's Cancel, acted on at the pipeline's safe points (liveportrait_jax.stopping): a
    thread turns ComfyUI's interrupt flag into a stop request, and the Stopped that follows into
    ComfyUI's own InterruptProcessingException. Outside ComfyUI this does nothing."""
    try:
        import comfy.model_management as mm
    except Exception:  # not inside ComfyUI
        yield
        return
    import signal
    import threading

    from liveportrait_jax import stopping

    stopping.reset()  # a long-lived server: each run starts without a request
    done = threading.Event()

    def watch():
        while not done.wait(0.1):
            if mm.processing_interrupted():
                stopping.request(signal.SIGINT)
                return

    watcher = threading.Thread(target=watch, name='comfy-interrupt', daemon=True)
    watcher.start()
    try:
        yield
    except stopping.Stopped:
        mm.throw_exception_if_processing_interrupted()
        raise
    finally:
        done.set()
        watcher.join()
        stopping.reset()


def _default_device():
    import jax

    current = jax.config.jax_default_device
    if current is None:
        return jax.devices()[0]
    return current if isinstance(current, jax.Device) else None


def _progress_bar(total):
    """ComfyUI's progress bar when running inside ComfyUI, else None."""
    try:
        from comfy.utils import ProgressBar
    except Exception:  # not inside ComfyUI
        return None
    try:
        return ProgressBar(total)
    except Exception:
        return None


class LivePortraitMotionScript:
    """Builds a keyframed motion script (README "Motion scripts") for the Process node."""

    DESCRIPTION = (
        "A motion script: keyframes of the portrait editor's controls over time (pitch, yaw, "
        'roll, x, y, z, smile, wink, eyebrow, gaze_x, gaze_y, eye_open, lip_open, pouting, '
        'pursing, grin, aaa, eee, woo). keyframes: one per line, "time: control=value, ...", '
        'e.g. "1.0: yaw=15, smile=0.6"; or YAML/JSON text of a whole script.'
    )
    RETURN_TYPES = (SCRIPT_TYPE, 'INT')
    RETURN_NAMES = ('motion_script', 'frames')
    FUNCTION = 'build'
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {
            'required': {
                'duration': ('FLOAT', {'default': 3.0, 'min': 0.04, 'max': 3600.0, 'step': 0.1}),
                'fps': ('FLOAT', {'default': 25.0, 'min': 1.0, 'max': 240.0, 'step': 1.0}),
                'interpolation': (['smooth', 'linear'], {'default': 'smooth'}),
                'keyframes': (
                    'STRING',
                    {'multiline': True, 'default': '0: \n1.0: yaw=15, smile=0.6\n2.0: yaw=0'},
                ),
            }
        }

    def build(self, duration, fps, interpolation, keyframes):
        from liveportrait_jax.pipeline.motion_script import parse_script

        data = script_from_text(keyframes, duration, fps, interpolation)
        script = parse_script(data, '<ComfyUI motion script>')
        return script, script.n_frames


def script_from_text(text, duration, fps, interpolation):
    """A script dict from the node's keyframes text: lines "time: control=value, ..." (blank lines
    and # comments skipped), or the YAML/JSON text of a whole script (whose keys win)."""
    import yaml

    stripped = (text or '').strip()
    if stripped.startswith(('{', 'duration', 'keyframes')):
        data = yaml.safe_load(stripped)  # JSON is YAML too
        if not isinstance(data, dict):
            raise ValueError('keyframes: a whole script must be a mapping')
        return {'duration': duration, 'fps': fps, 'interpolation': interpolation, **data}
    frames = []
    for n, line in enumerate(stripped.splitlines(), 1):
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        time, _, rest = line.partition(':')
        try:
            kf = {'time': float(time)}
            for item in filter(None, (p.strip() for p in rest.split(','))):
                key, eq, value = item.partition('=')
                if not eq:
                    raise ValueError(f'{item!r} is not control=value')
                kf[key.strip()] = float(value)
        except ValueError as e:
            raise ValueError(f'keyframes line {n} ({line!r}): {e}') from None
        frames.append(kf)
    return {'duration': duration, 'fps': fps, 'interpolation': interpolation, 'keyframes': frames}


NODE_CLASS_MAPPINGS = {
    'LivePortraitJAXLoader': LivePortraitLoader,
    'LivePortraitJAXProcess': LivePortraitProcess,
    'LivePortraitJAXMotionScript': LivePortraitMotionScript,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    'LivePortraitJAXLoader': 'LivePortrait (JAX) Loader',
    'LivePortraitJAXProcess': 'LivePortrait (JAX) Process',
    'LivePortraitJAXMotionScript': 'LivePortrait (JAX) Motion Script',
}
