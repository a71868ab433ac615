"""Motion scripts (pipeline/motion_script.py): frame counts, interpolation, the editor's edits,
validation errors, file formats."""

import json

import numpy as np
import pytest

from liveportrait_jax.pipeline import editing
from liveportrait_jax.pipeline.motion_script import (
    ScriptError,
    load_script,
    parse_script,
    save_script,
    script_from_sliders,
)


def script(keyframes, duration=2.0, fps=10, **top):
    return parse_script({'duration': duration, 'fps': fps, 'keyframes': keyframes, **top})


@pytest.mark.parametrize('duration, fps, n', [(2.5, 30, 75), (1 / 3, 25, 8), (1.0, 24.0, 24)])
def test_frame_count(duration, fps, n):
    assert script([{'time': 0}], duration, fps).n_frames == n


@pytest.mark.parametrize('how', ['linear', 'smooth'])
def test_values_at_keyframes_and_between(how):
    s = script(
        [{'time': 0, 'yaw': -10}, {'time': 1.0, 'yaw': 20}, {'time': 1.5, 'smile': 1.0}],
        interpolation=how,
    )
    v = s.values()
    yaw, smile = v['head_yaw'], v['smile']
    assert yaw[0] == -10 and yaw[10] == 20 and (yaw[10:] == 20).all()  # exact, then held
    assert smile[0] == 0 and smile[15] == 1.0  # from neutral at time 0
    mid = yaw[5]
    if how == 'linear':
        assert mid == pytest.approx(5.0)
    else:  # the smooth ease is monotone and stays within the two keyframes' values
        assert np.all(np.diff(yaw[:11]) >= 0) and yaw[:11].min() >= -10 and yaw[:11].max() <= 20
        assert yaw[1] - yaw[0] < yaw[5] - yaw[4]  # eases in


def test_per_segment_interpolation_and_ratios():
    s = script([{'time': 0, 'pitch': 0}, {'time': 1, 'pitch': 10, 'interpolation': 'linear'},
                {'time': 2, 'pitch': 0, 'eye_open': 0.1}])  # fmt: skip
    v = s.values()
    assert v['head_pitch'][5] == pytest.approx(5.0)  # linear into keyframe 1
    assert v['head_pitch'][15] == pytest.approx(5.0)  # smooth into 2: the midpoint is the mean
    assert v['head_pitch'][13] != pytest.approx(7.0)
    assert (v['eye_ratio'] == np.float32(0.1)).all()  # a target holds its first value before it


def test_edit_arrays_match_the_editor():
    s = script([{'time': 0}, {'time': 1, 'yaw': 12, 'z': 1.1, 'smile': 0.5, 'eyebrow': -10,
                                'gaze_x': 5, 'aaa': 40, 'x': 0.05}])  # fmt: skip
    e = s.edit_arrays(21)
    for i in (0, 4, 10, 19):
        sl = s.sliders(i)
        np.testing.assert_allclose(e['exp'][i], editing.expression_delta(sl), atol=1e-7)
        assert e['angles'][i, 1] == pytest.approx(sl.head_yaw)
        assert e['mov_z'][i] == pytest.approx(sl.mov_z)
    neutral = script([{'time': 0}]).edit_arrays()
    assert not neutral['angles'].any() and not neutral['exp'].any()
    assert (neutral['mov_z'] == 1).all() and neutral['eye_ratio'] is None


def test_vowels_are_the_lip_sliders():
    a = script([{'time': 0, 'aaa': 50, 'eee': 5, 'woo': 3}]).sliders(0)
    b = script([{'time': 0, 'mouth': 50, 'grin': 5, 'pursing': 3}]).sliders(0)
    assert a == b and a.lip_variation_three == 50


@pytest.mark.parametrize(
    'data, message',
    [
        ({'duration': 1, 'keyframes': [{'time': 0, 'nod': 1}]}, "unknown control 'nod'"),
        ({'duration': 1, 'keyframes': [{'time': 0.5}, {'time': 0.2}]}, 'times must increase'),
        ({'duration': 1, 'keyframes': [{'time': 2}]}, 'within the duration'),
        ({'duration': 1, 'keyframes': [{'time': 0, 'yaw': 90}]}, r'yaw must be in \[-25, 25\]'),
        ({'duration': 1, 'keyframes': [{'time': 0, 'smile': 'big'}]}, 'smile must be a number'),
        ({'duration': 1, 'keyframes': [{'time': 0, 'aaa': 1, 'mouth': 2}]}, 'another control'),
        ({'duration': 1, 'keyframes': []}, 'non-empty list'),
        ({'duration': 1, 'keyframes': [{'time': 0}], 'interpolation': 'cubic'}, 'interpolation'),
        ({'duration': 0, 'keyframes': [{'time': 0}]}, 'positive'),
        ({'keyframes': [{'time': 0}]}, 'duration'),
        ({'duration': 1, 'speed': 2, 'keyframes': [{'time': 0}]}, 'unknown key'),
    ],
)
def test_errors(data, message):
    with pytest.raises(ScriptError, match=message) as e:
        parse_script(data, 'clip.yaml')
    assert 'clip.yaml' in str(e.value)


def test_files_yaml_json_round_trip(tmp_path):
    keys = [(0.0, editing.EditSliders()), (0.5, editing.EditSliders(head_roll=8, wink=20))]
    data = script_from_sliders(keys, 1.0, 12)
    y = load_script(save_script(data, tmp_path / 'a.yaml'))
    j = load_script(save_script(data, tmp_path / 'a.json'))
    assert json.loads((tmp_path / 'a.json').read_text())['keyframes'][1]['roll'] == 8
    np.testing.assert_array_equal(y.edit_arrays()['exp'], j.edit_arrays()['exp'])
    assert y.sliders(6) == editing.EditSliders(head_roll=8, wink=20)
    assert y.sliders(0) == editing.EditSliders()
    (tmp_path / 'bad.yaml').write_text('duration: [1\n')
    with pytest.raises(ScriptError, match='not valid YAML'):
        load_script(tmp_path / 'bad.yaml')
    with pytest.raises(ScriptError, match='cannot read'):
        load_script(tmp_path / 'missing.yaml')
