"""Model sets on disk: PyTorch `.pth` files -> networks, and orbax checkpoints of converted sets.

A converted model set is a directory:

    <set>/metadata.json   format, config name, variant, source file names and sha256 hashes
    <set>/params/         orbax checkpoint of {network: nnx state as a pure dict}
"""

import json
import os

import jax
import jax.numpy as jnp
from flax import nnx

from liveportrait_jax import stopping
from liveportrait_jax.models.model_set import (
    BASE_NETWORKS,
    NETWORKS,
    STITCHING_NETWORKS,
    build_networks,
    fill_module,
    fill_state,
    networks_from_flat,
    resolve_config,
)
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
            raise CheckpointError(
                f'{files[name]}: expected a state dict, found {type(sd).__name__}'
            )
        sds[name], sources[name] = sd, files[name]
    path = files['stitching_retargeting_module']
    packed = load_torch_checkpoint(path)
    for name in STITCHING_NETWORKS:
        key = STITCHING_FILE_KEYS[name]
        if not isinstance(packed, dict) or key not in packed:
            raise CheckpointError(
                f'{path}: the stitching checkpoint has no {key!r} entry '
                f'(found {sorted(packed) if isinstance(packed, dict) else packed})'
            )
        sds[name], sources[name] = strip_ddp_prefix(packed[key]), f'{path}[{key}]'
    return sds, sources


def map_torch_state_dicts(sds, sources, config):
    """Strictly maps every network's torch state dict: {network: {dotted path: float32 array}}."""
    abstract = build_networks(config, abstract=True)
    return {
        name: map_state_dict(
            name, sds[name], flat_state_shapes(abstract[name]), source=sources[name]
        )
        for name in NETWORKS
    }


def load_torch_networks(files, config='full', *, dtype=jnp.float32):
    """{name: nnx.Module} read directly from the reference `.pth` files (no conversion step).

    `files` is a directory holding the five files, or {network name: path}.
    """
    config = resolve_config(config)
    if isinstance(files, (str, os.PathLike)):
        d = os.fspath(files)
        files = {n: os.path.join(d, f'{n}.pth') for n in BASE_NETWORKS}
        files['stitching_retargeting_module'] = os.path.join(d, STITCHING_FILE)
    sds, sources = torch_state_dicts(files)
    return networks_from_flat(map_torch_state_dicts(sds, sources, config), config, dtype=dtype)


def save_flat_model_set(directory, flat_by_network, metadata):
    """Writes {network: {dotted path: array}} as an orbax checkpoint plus metadata.json.

    `directory` must not exist (callers write into a temporary directory and rename it).
    """
    import orbax.checkpoint as ocp

    abstract = build_networks(metadata['config'], abstract=True)
    tree = {
        name: nnx.to_pure_dict(fill_state(abstract[name], flat_by_network[name]))
        for name in NETWORKS
    }
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
            f'liveportrait-jax convert pretrained_weights {path}'
        )
    raise CheckpointError(
        f'{path}: no converted model set here (no {METADATA}, nor {variant}/{METADATA}). '
        f'Convert the released weights first: liveportrait-jax convert pretrained_weights {path}'
    )


def load_model_set(path, *, dtype=jnp.float32, variant='human'):
    """Restores a converted model set: ({name: nnx.Module}, model config, its directory).

    `path` and `variant` as in api.load_models, which wraps the result in LivePortraitModels.
    """
    import orbax.checkpoint as ocp

    directory = resolve_model_set(path, variant)
    meta = read_metadata(directory)
    config = resolve_config(meta['config'])
    abstract = build_networks(config, dtype=dtype, abstract=True)
    target = {
        name: jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
            nnx.to_pure_dict(nnx.state(abstract[name])),
        )
        for name in NETWORKS
    }
    params = os.path.abspath(os.path.join(directory, PARAMS))
    try:
        tree = ocp.StandardCheckpointer().restore(params, target)
    except Exception as e:  # orbax raises many types; name the directory whatever it was
        raise CheckpointError(
            f'{params}: cannot restore the converted checkpoint '
            f'({type(e).__name__}: {str(e)[:500]})'
        ) from None
    networks = {}
    for name in NETWORKS:
        stopping.check()  # between networks (the restore above is one long call: the watchdog's)
        graphdef, state = nnx.split(abstract[name])
        nnx.replace_by_pure_dict(state, tree[name])
        networks[name] = nnx.merge(graphdef, state)
    return networks, config, directory


def sha256_file(path, chunk=1 << 20):
    import hashlib

    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


def read_stitching_networks(path, networks):
    """{stitching, lip, eye: nnx.Module} from a stitching `.pth` file, shaped like `networks`'.

    The file has the reference's layout ({'retarget_shoulder', 'retarget_mouth', 'retarget_eye'}),
    e.g. a head fine-tuned and exported with liveportrait-jax; it is loaded strictly.
    """
    packed = load_torch_checkpoint(path)
    out = {}
    for name in STITCHING_NETWORKS:
        key = STITCHING_FILE_KEYS[name]
        if not isinstance(packed, dict) or key not in packed:
            raise CheckpointError(f'{path}: not a stitching/retargeting checkpoint (no {key!r})')
        flat = map_state_dict(
            name,
            strip_ddp_prefix(packed[key]),
            flat_state_shapes(networks[name]),
            source=f'{path}[{key}]',
        )
        out[name] = fill_module(networks[name], flat)
    return out


__all__ = [
    'FORMAT',
    'load_model_set',
    'load_torch_networks',
    'map_torch_state_dicts',
    'read_metadata',
    'read_stitching_networks',
    'resolve_model_set',
    'save_flat_model_set',
    'sha256_file',
    'torch_state_dicts',
]
