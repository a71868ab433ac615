"""The command line's shape, the import boundary, and the one weights-or-demo policy."""

import argparse
import subprocess
import sys

import pytest

from liveportrait_jax.cli import SUBCOMMANDS, build_parser


def _subparsers():
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def test_every_subcommand_is_there_and_every_flag_is_described():
    subs = _subparsers()
    assert set(subs) == set(SUBCOMMANDS)
    for name, sub in subs.items():
        assert sub.description, name
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help.strip(), (
                f'{name} {action.option_strings or action.dest}'
            )


def test_animate_has_one_gif_flag_and_says_what_max_frames_limits():
    actions = {o: a for a in _subparsers()['animate']._actions for o in a.option_strings}
    assert '--flag-write-gif' in actions and '--gif' not in actions
    assert 'driving video' in actions['--max-frames'].help


def test_import_needs_neither_mediapipe_nor_opencv():
    code = (
        'import sys, liveportrait_jax, liveportrait_jax.api, liveportrait_jax.models.core, '
        'liveportrait_jax.weights.checkpoint; '
        "bad = [m for m in ('mediapipe', 'cv2') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == '[]', out.stdout


def test_weights_or_demo_policy(tmp_path, caplog):
    import liveportrait_jax as lp
    from liveportrait_jax.weights.errors import CheckpointError

    missing = tmp_path / 'no_weights'
    with pytest.raises(CheckpointError, match='liveportrait-jax convert'):
        lp.load_models_or_demo(missing)
    models = lp.load_models_or_demo(missing, fallback=True)
    assert models.random_weights and models.config.name == 'tiny'
    assert 'RANDOM WEIGHTS' in caplog.text and str(missing) in caplog.text
    assert lp.output_label(models) == lp.RANDOM_LABEL
    assert lp.output_label(models, 'mine') == 'mine'
    assert lp.load_models_or_demo(missing, demo=True, demo_config='tiny').random_weights


def test_the_label_is_empty_for_real_weights(tiny_models):
    import liveportrait_jax as lp

    assert not tiny_models.random_weights and lp.output_label(tiny_models) == ''
