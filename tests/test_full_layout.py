"""The released (full-size) checkpoint layout maps one-to-one onto the full NNX models.

The networks are built abstractly (no memory for weights) and the converter's mapping is driven with
constant arrays of exactly the shapes listed in fixtures/full_checkpoint_layout.json.
"""

import json

import numpy as np
import pytest
from conftest import FIXTURES

from liveportrait_jax.models import NETWORKS
from liveportrait_jax.models.configs import get_config as get_model_config
from liveportrait_jax.models.model_set import build_networks
from liveportrait_jax.weights.checkpoint import map_torch_state_dicts
from liveportrait_jax.weights.errors import CheckpointMismatchError
from liveportrait_jax.weights.mapping import STITCHING_FILE_KEYS
from liveportrait_jax.weights.strict import flat_state_shapes, map_state_dict, strip_ddp_prefix


@pytest.fixture(scope='module')
def layout():
    with open(FIXTURES / 'full_checkpoint_layout.json') as f:
        return json.load(f)


def _arrays(entries):
    out = {}
    for key, (shape, dtype) in entries.items():
        value = 0.5 if 'running_var' in key or 'weight_u' in key or 'weight_v' in key else 0.01
        out[key] = np.broadcast_to(np.asarray(value, dtype), shape)  # no memory per tensor
    return out


@pytest.fixture(scope='module')
def state_dicts(layout):
    sds = {n: _arrays(layout[f'{n}.pth']) for n in NETWORKS[:4]}
    packed = layout['stitching_retargeting_module.pth']
    for name, key in STITCHING_FILE_KEYS.items():
        sds[name] = strip_ddp_prefix(_arrays(packed[key]))
    return sds


@pytest.fixture(scope='module')
def abstract_full():
    return build_networks('full', abstract=True)


def test_full_config_matches_released_models_json():
    with open(FIXTURES / 'models_full.json') as f:
        released = json.load(f)
    ours = get_model_config('full').to_dict()
    for section, params in released.items():
        for k, v in params.items():
            assert ours[section][k] == v, (section, k)


def test_every_key_and_every_parameter_maps_exactly_once(state_dicts, abstract_full):
    flat = map_torch_state_dicts(state_dicts, {n: n for n in NETWORKS}, get_model_config('full'))
    total_params = 0
    for name in NETWORKS:
        target = flat_state_shapes(abstract_full[name])
        assert set(flat[name]) == set(target), name
        for path, value in flat[name].items():
            assert tuple(value.shape) == target[path][0], path
        total_params += sum(int(np.prod(v.shape)) for v in flat[name].values())
        # Every checkpoint key was used: its layer is a mapped Flax layer.
        mapped_layers = {p.rpartition('.')[0] for p in flat[name]}
        unused = [k for k in state_dicts[name] if k.rpartition('.')[0] not in mapped_layers]
        assert not unused, (name, unused)
    assert total_params > 100_000_000, total_params  # the full model set has ~130M parameters


@pytest.mark.parametrize('network', NETWORKS)
def test_dropping_any_layer_is_reported(state_dicts, abstract_full, network):
    sd = dict(state_dicts[network])
    victim = sorted(sd)[len(sd) // 2]
    del sd[victim]
    with pytest.raises(CheckpointMismatchError) as e:
        map_state_dict(network, sd, flat_state_shapes(abstract_full[network]), source=network)
    assert any(victim in m or victim.rpartition('.')[0] in m for m in e.value.missing)
