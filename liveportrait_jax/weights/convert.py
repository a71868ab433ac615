"""Convert the released LivePortrait `.pth` checkpoints into liveportrait-jax model sets (orbax).

Source layouts understood (SRC is the released `pretrained_weights/` folder, or a flat folder):

    SRC/liveportrait/base_models/{appearance_feature_extractor,motion_extractor,
                                  warping_module,spade_generator}.pth            -> DST/human
    SRC/liveportrait/retargeting_models/stitching_retargeting_module.pth
    SRC/liveportrait_animals/base_models_v1.1/*.pth (or base_models/)          -> DST/animals
        (the animal models reuse the human stitching module unless their own folder has one)
    SRC/*.pth, all five files side by side                                     -> DST/human

Each set is written to a temporary directory and renamed into place, so a failed or interrupted run
never leaves a half-written set; a set whose sources (sha256) and config are unchanged is skipped.
"""

import dataclasses
import os
import shutil

from liveportrait_jax.models import BASE_NETWORKS
from liveportrait_jax.models.configs import get_config as get_model_config
from liveportrait_jax.weights.checkpoint import (
    FORMAT,
    STITCHING_FILE,
    map_torch_state_dicts,
    read_metadata,
    save_flat_model_set,
    sha256_file,
    torch_state_dicts,
)
from liveportrait_jax.weights.errors import CheckpointError, CheckpointMismatchError

CONFIG_CHOICES = ('auto', 'full', 'tiny')
_HUMAN_STITCHING = os.path.join('liveportrait', 'retargeting_models', STITCHING_FILE)
_LAYOUTS = {
    'human': ([os.path.join('liveportrait', 'base_models')], [_HUMAN_STITCHING]),
    'animals': (
        [
            os.path.join('liveportrait_animals', 'base_models_v1.1'),
            os.path.join('liveportrait_animals', 'base_models'),
        ],
        [
            os.path.join('liveportrait_animals', 'retargeting_models', STITCHING_FILE),
            _HUMAN_STITCHING,
        ],
    ),
}


@dataclasses.dataclass
class ConvertResult:
    variant: str
    directory: str
    status: str  # 'converted' or 'up to date'
    config: str


def _set_files(base_dir, stitching_path):
    files = {n: os.path.join(base_dir, f'{n}.pth') for n in BASE_NETWORKS}
    files['stitching_retargeting_module'] = stitching_path
    return files


def _find_flat_set(src):
    """The five files side by side in `src`, or None when there are none of them.

    Some but not all of them is almost certainly an incomplete download or copy, so name what is
    missing rather than falling through to "no checkpoints found".
    """
    files = _set_files(src, os.path.join(src, STITCHING_FILE))
    missing = [os.path.basename(p) for p in files.values() if not os.path.isfile(p)]
    if len(missing) == len(files):
        return None
    if missing:
        raise CheckpointError(
            f'{src}: found {len(files) - len(missing)} of the {len(files)} '
            f'checkpoint files; missing: {", ".join(missing)}'
        )
    return files


def find_model_sets(src):
    """{variant: {file role: path}} for every complete model set under `src`."""
    src = os.fspath(src)
    if not os.path.isdir(src):
        raise CheckpointError(f'{src}: source directory not found')
    found = {}
    for variant, (bases, stitchings) in _LAYOUTS.items():
        base = next(
            (os.path.join(src, b) for b in bases if os.path.isdir(os.path.join(src, b))), None
        )
        if base is None:
            continue
        stitching = next(
            (os.path.join(src, s) for s in stitchings if os.path.isfile(os.path.join(src, s))), None
        )
        files = _set_files(base, stitching)
        absent = [p for p in files.values() if p is None or not os.path.isfile(p)]
        if stitching is None or absent:
            raise CheckpointError(
                f'{src}: the {variant} model set is incomplete; missing '
                + ', '.join(p or STITCHING_FILE for p in absent or [None])
            )
        found[variant] = files
    if not found:
        flat = _find_flat_set(src)
        if flat:
            found['human'] = flat
    if not found:
        raise CheckpointError(
            f'{src}: no LivePortrait checkpoints found. Expected the released layout '
            '(liveportrait/base_models/*.pth and liveportrait/retargeting_models/'
            f'{STITCHING_FILE}) or the five .pth files side by side.'
        )
    return found


def _map_with_config(sds, sources, config_name):
    if config_name != 'auto':
        return config_name, map_torch_state_dicts(sds, sources, get_model_config(config_name))
    first_error = None
    for name in ('full', 'tiny'):
        try:
            return name, map_torch_state_dicts(sds, sources, get_model_config(name))
        except CheckpointMismatchError as e:
            first_error = first_error or e
    raise first_error


def _up_to_date(directory, hashes, config_name):
    try:
        meta = read_metadata(directory)
    except CheckpointError:
        return False
    same_config = config_name in ('auto', meta.get('config'))
    return same_config and {k: v['sha256'] for k, v in meta.get('sources', {}).items()} == hashes


def convert_model_set(files, directory, variant, config='auto', log=print):
    """Converts one model set to `directory` (atomically). Returns a ConvertResult."""
    hashes = {role: sha256_file(path) for role, path in files.items()}
    if _up_to_date(directory, hashes, config):
        meta = read_metadata(directory)
        log(f'{variant}: {directory} is up to date (same sources and config); nothing to do')
        return ConvertResult(variant, directory, 'up to date', meta['config'])
    log(f'{variant}: reading {len(files)} checkpoint files')
    sds, sources = torch_state_dicts(files)
    config_name, flat = _map_with_config(sds, sources, config)
    log(
        f'{variant}: every key mapped strictly onto the {config_name!r} config; writing {directory}'
    )
    metadata = {
        'format': FORMAT,
        'config': config_name,
        'variant': variant,
        'sources': {
            role: {'file': os.path.basename(path), 'sha256': hashes[role]}
            for role, path in files.items()
        },
    }
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f'.{os.path.basename(directory)}.tmp-{os.getpid()}')
    old = os.path.join(parent, f'.{os.path.basename(directory)}.old-{os.getpid()}')
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_flat_model_set(tmp, flat, metadata)
        if os.path.exists(directory):
            os.rename(directory, old)
        os.rename(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return ConvertResult(variant, directory, 'converted', config_name)


def convert(src, dst, config='auto', log=print):
    """Converts every model set found under `src` into `dst/<variant>`. Returns ConvertResults."""
    if config not in CONFIG_CHOICES:
        raise ValueError(f'config must be one of {CONFIG_CHOICES}, got {config!r}')
    sets = find_model_sets(src)
    return [
        convert_model_set(files, os.path.join(os.fspath(dst), variant), variant, config, log)
        for variant, files in sets.items()
    ]
