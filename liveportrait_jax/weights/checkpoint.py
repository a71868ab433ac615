"""Model sets on disk: PyTorch `.pth` files -> Flax states, and orbax checkpoints of converted sets.

A converted model set is a directory:

    <set>/metadata.json   format, config name, variant, source file names and sha256 hashes
    <set>/params/         orbax checkpoint of {network: nnx state as a pure dict}
"""

import json
import os

import jax
import jax.numpy as jnp
from flax import nnx

from liveportrait_jax.api import LivePortraitModels, build_models
from liveportrait_jax.config import get_model_config
from liveportrait_jax.models import BASE_NETWORKS, NETWORKS, STITCHING_NETWORKS
from liveportrait_jax.weights.errors import CheckpointError
from liveportrait_jax.weights.mapping import STITCHING_FILE_KEYS
from liveportrait_jax.weights.strict import flat_state_shapes, map_state_dict, strip_ddp_prefix
from liveportrait_jax.weights.torch_reader import load_torch_checkpoint

FORMAT = 'liveportrait-jax/1'
METADATA = 'metadata.json'
PARAMS = 'params'
STITCHING_FILE = 'stitching_retargeting_module.pth'


def torch_state_dicts(files):
    """Reads the reference checkpoint files into per-network PyTorch state dicts.

    Args:
      files: {base network name or 'stitching_retargeting_module': path to its .pth}.

    Returns:
      ({network: state dict}, {network: source path}); the stitching file yields three networks.
    """
    sds, sources = {}, {}
    for name in BASE_NETWORKS:
        sd = load_torch_checkpoint(files[name])
        if not isinstance(sd, dict):
            raise CheckpointError(f'{files[name]}: expected a state dict, found {type(sd).__name__}')
        sds[name], sources[name] = sd, files[name]
    path = files['stitching_retargeting_module']
    packed = load_torch_checkpoint(path)
    for name in STITCHING_NETWORKS:
        key = STITCHING_FILE_KEYS[name]
        if not isinstance(packed, dict) or key not in packed:
            raise CheckpointError(f'{path}: the stitching checkpoint has no {key!r} entry '
                                  f'(found {sorted(packed) if isinstance(packed, dict) else packed})')
        sds[name], sources[name] = strip_ddp_prefix(packed[key]), f'{path}[{key}]'
    return sds, sources


def fill_state(module, flat_arrays, dtype=None):
    """nnx.State of `module` (abstract or concrete) with values from {dotted path: array}."""
    state = nnx.state(module)
    pure = nnx.to_pure_dict(state)
    for path, _ in nnx.to_flat_state(state):
        node = pure
        for p in path[:-1]:
            node = node[p]
        value = flat_arrays['.'.join(str(p) for p in path)]
        node[path[-1]] = jnp.asarray(value if dtype is None else value.astype(dtype))
    nnx.replace_by_pure_dict(state, pure)
    return state


def models_from_flat(flat_by_network, config, *, dtype=jnp.float32, source=None):
    """LivePortraitModels from {network: {dotted path: array}} (already strictly mapped)."""
    abstract = build_models(config, dtype=dtype, abstract=True)
    networks = {}
    for name in NETWORKS:
        graphdef, _ = nnx.split(abstract[name])
        networks[name] = nnx.merge(graphdef, fill_state(abstract[name], flat_by_network[name]))
    return LivePortraitModels(networks, config, dtype=dtype, source=source)


def map_torch_state_dicts(sds, sources, config):
    """Strictly maps every network's torch state dict: {network: {dotted path: float32 array}}."""
    abstract = build_models(config, abstract=True)
    return {name: map_state_dict(name, sds[name], flat_state_shapes(abstract[name]),
                                 source=sources[name])
            for name in NETWORKS}


def load_torch_model_set(files, config='full', *, dtype=jnp.float32):
    """Loads the reference `.pth` files directly (no conversion step) into LivePortraitModels.

    `files` is a directory holding the five files, or {network name: path}.
    """
    if isinstance(config, str):
        config = get_model_config(config)
    if isinstance(files, (str, os.PathLike)):
        d = os.fspath(files)
        files = {n: os.path.join(d, f'{n}.pth') for n in BASE_NETWORKS}
        files['stitching_retargeting_module'] = os.path.join(d, STITCHING_FILE)
    sds, sources = torch_state_dicts(files)
    flat = map_torch_state_dicts(sds, sources, config)
    return models_from_flat(flat, config, dtype=dtype, source=str(files))


def save_flat_model_set(directory, flat_by_network, metadata):
    """Writes {network: {dotted path: array}} as an orbax checkpoint plus metadata.json.

    `directory` must not exist (callers write into a temporary directory and rename it).
    """
    import orbax.checkpoint as ocp

    config = get_model_config(metadata['config'])
    abstract = build_models(config, abstract=True)
    tree = {name: nnx.to_pure_dict(fill_state(abstract[name], flat_by_network[name]))
            for name in NETWORKS}
    os.makedirs(directory)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(os.path.abspath(os.path.join(directory, PARAMS)), tree)
    ckptr.wait_until_finished()
    with open(os.path.join(directory, METADATA), 'w') as f:
        json.dump(metadata, f, indent=1, sort_keys=True)


def read_metadata(directory):
    path = os.path.join(directory, METADATA)
    try:
        with open(path) as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f'{path}: not found; is {directory} a converted model set?') from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f'{path}: corrupt metadata ({e})') from None
    if meta.get('format') != FORMAT:
        raise CheckpointError(f'{path}: unknown format {meta.get("format")!r}, expected {FORMAT!r}')
    return meta


def resolve_model_set(path, variant='human'):
    """The model-set directory for `path`: itself if it holds metadata.json, else path/variant."""
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, METADATA)):
        return path
    sub = os.path.join(path, variant)
    if os.path.isfile(os.path.join(sub, METADATA)):
        return sub
    if not os.path.exists(path):
        raise CheckpointError(
            f'{path}: weights directory not found. Download the released LivePortrait weights '
            '(KwaiVGI/LivePortrait on Hugging Face, folder pretrained_weights/) and convert them: '
            f'liveportrait-jax convert pretrained_weights {path}')
    raise CheckpointError(
        f'{path}: no converted model set here (no {METADATA}, nor {variant}/{METADATA}). '
        f'Convert the released weights first: liveportrait-jax convert pretrained_weights {path}')


def load_model_set(path, *, dtype=jnp.float32, variant='human'):
    """Restores a converted model set into LivePortraitModels (see api.load_models)."""
    import orbax.checkpoint as ocp

    directory = resolve_model_set(path, variant)
    meta = read_metadata(directory)
    config = get_model_config(meta['config'])
    abstract = build_models(config, dtype=dtype, abstract=True)
    target = {name: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                                 nnx.to_pure_dict(nnx.state(abstract[name])))
              for name in NETWORKS}
    params = os.path.abspath(os.path.join(directory, PARAMS))
    try:
        tree = ocp.StandardCheckpointer().restore(params, target)
    except Exception as e:  # orbax raises many types; name the directory whatever it was
        raise CheckpointError(f'{params}: cannot restore the converted checkpoint '
                              f'({type(e).__name__}: {str(e)[:500]})') from None
    networks = {}
    for name in NETWORKS:
        graphdef, state = nnx.split(abstract[name])
        nnx.replace_by_pure_dict(state, tree[name])
        networks[name] = nnx.merge(graphdef, state)
    return LivePortraitModels(networks, config, dtype=dtype, source=directory)


def sha256_file(path, chunk=1 << 20):
    import hashlib
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()




def replace_stitching_module(models, path):
    """A copy of `models` whose stitching / eye / lip MLPs come from a stitching `.pth` file.

    The file has the reference's layout ({'retarget_shoulder', 'retarget_mouth', 'retarget_eye'}),
    e.g. a head fine-tuned and exported with liveportrait-jax; it is loaded strictly.
    """
    packed = load_torch_checkpoint(path)
    networks = dict(models.networks)
    for name in STITCHING_NETWORKS:
        key = STITCHING_FILE_KEYS[name]
        if not isinstance(packed, dict) or key not in packed:
            raise CheckpointError(f'{path}: not a stitching/retargeting checkpoint (no {key!r})')
        flat = map_state_dict(name, strip_ddp_prefix(packed[key]),
                              flat_state_shapes(models.networks[name]), source=f'{path}[{key}]')
        graphdef, _ = nnx.split(models.networks[name])
        networks[name] = nnx.merge(graphdef, fill_state(models.networks[name], flat))
    return LivePortraitModels(networks, models.config, dtype=models.dtype,
                              random_weights=models.random_weights,
                              source=f'{models.source} + S from {path}')


__all__ = ['FORMAT', 'load_model_set', 'load_torch_model_set', 'map_torch_state_dicts',
           'replace_stitching_module',
           'models_from_flat', 'read_metadata', 'resolve_model_set', 'save_flat_model_set',
           'sha256_file', 'torch_state_dicts']
