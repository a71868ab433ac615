"""Motion scripts as driving input and on top of a driving video (pipeline/scripted.py), on tiny
random weights: frame counts, the neutral script reproducing the editor's neutral result, a
keyframe reproducing the editor's edit of the same sliders, edits on top of a video."""

import numpy as np
import pytest

from liveportrait_jax.pipeline import AnimateOptions, animate, animate_frames, editing
from liveportrait_jax.pipeline.demo_media import astronaut, synth_driving_frames, write_demo_inputs
from liveportrait_jax.pipeline.motion_script import parse_script

OPTS = AnimateOptions(scale=editing.EDIT_SOURCE_SCALE, flag_write_concat=False)


def _script(keyframes, duration=0.4, fps=10, **top):
    return parse_script({'duration': duration, 'fps': fps, 'keyframes': keyframes, **top})


@pytest.fixture(scope='module')
def prepared(models):
    return editing.prepare_portrait(models, astronaut(), scale=editing.EDIT_SOURCE_SCALE)


def test_neutral_script_is_the_editors_neutral(models, prepared):
    res = animate_frames(models, astronaut()[None], _script([{'time': 0}]), OPTS, label='')
    assert res.frames.shape[0] == 4  # round(0.4 s * 10 fps)
    _, want = editing.edit_keypoints_full(models, prepared, editing.EditSliders())
    np.testing.assert_allclose(res.x_d, np.repeat(want, 4, axis=0), atol=1e-5)
    assert (res.frames == res.frames[0]).all()  # nothing moves


def test_keyframe_is_the_editors_edit(models, prepared):
    sliders = editing.EditSliders(head_yaw=12.0, smile=0.8, mov_z=1.1)
    script = load_script_from_sliders(sliders)
    res = animate_frames(models, astronaut()[None], script, OPTS, label='')
    _, want = editing.edit_keypoints_full(models, prepared, sliders)
    np.testing.assert_allclose(res.x_d[-1], want[0], atol=1e-4)
    # Frame 0 is the neutral keyframe; the last frame is the edit; they differ.
    assert np.abs(res.x_d[0] - res.x_d[-1]).max() > 1e-3


def load_script_from_sliders(sliders):
    from liveportrait_jax.pipeline.motion_script import script_from_sliders

    data = script_from_sliders([(0.0, editing.EditSliders()), (0.3, sliders)], 0.4, 10)
    return parse_script(data)


def test_script_file_drives_animate(models, tmp_path):
    src, _ = write_demo_inputs(str(tmp_path / 'in'), n_frames=4)
    path = tmp_path / 'nod.yaml'
    path.write_text(
        'duration: 0.5\nfps: 8\nkeyframes:\n  - {time: 0}\n  - {time: 0.5, pitch: 10}\n'
    )
    res = animate(models, src, str(path), str(tmp_path / 'out'), OPTS, progress=False, label='')
    assert res.n_frames == 4 and res.fps == 8  # round(0.5 * 8)
    assert res.template is None  # a script's motion is the source's own, edited
    assert res.output.endswith('--nod.mp4')


def test_script_on_top_of_a_video(models):
    drv = synth_driving_frames(5, 256)
    base = animate_frames(models, astronaut()[None], drv, OPTS, label='')
    neutral = animate_frames(
        models, astronaut()[None], drv, OPTS, label='', motion_script=_script([{'time': 0}])
    )
    np.testing.assert_allclose(neutral.x_d, base.x_d, atol=1e-5)  # neutral edits change nothing
    turned = animate_frames(
        models, astronaut()[None], drv, OPTS, label='',
        motion_script=_script([{'time': 0, 'yaw': 15}]),
    )  # fmt: skip
    assert np.abs(turned.x_d - base.x_d).max() > 1e-3
    assert turned.frames.shape == base.frames.shape
