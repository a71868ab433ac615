"""Animation options: the one schema of the reference's inference arguments (same names, defaults).

Defaults follow the reference's command line (src/config/argument_config.py); the crop defaults
live in faces.crop (SOURCE_CROP, DRIVING_CROP). Every field carries its help text and valid range
or choices as metadata (`opt`); AnimateOptions validates against them, and the front ends are
generated from them: the CLI flags (`add_option_arguments`), the web app's controls and the
ComfyUI node's inputs (which map their own names onto these fields).
"""

import argparse
import dataclasses
import math
import numbers
from typing import Optional, Tuple

from liveportrait_jax.faces.crop import DRIVING_CROP, SOURCE_CROP

ANIMATION_REGIONS = ('exp', 'pose', 'lip', 'eyes', 'all')
DRIVING_OPTIONS = ('expression-friendly', 'pose-friendly')
MOTION_SMOOTHING = ('none', 'one-euro', 'kalman')

# Keypoint indices the reference animates per region (its pipeline's hard-coded index sets).
EXP_FULL_IDX = (1, 2, 6, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)
LIP_IDX = (6, 12, 14, 17, 19, 20)
EYES_IDX = (11, 13, 15, 16, 18)


def opt(default, help, lo=None, hi=None, step=None, choices=None):
    """A schema field: its default, help text and valid range [lo, hi] (UI step) or choices."""
    return dataclasses.field(
        default=default, metadata=dict(help=help, min=lo, max=hi, step=step, choices=choices)
    )


@dataclasses.dataclass(frozen=True)
class AnimateOptions:
    # motion
    flag_relative_motion: bool = opt(
        True, 'apply the driving motion relative to its first frame (off: absolute motion)'
    )
    driving_option: str = opt(
        'expression-friendly',
        'expression-friendly rescales the driving '
        'motion to the source face; pose-friendly applies it as driven',
        choices=DRIVING_OPTIONS,
    )
    driving_multiplier: float = opt(
        1.0, 'scale of the final motion around the source keypoints', 0.0, 10.0, 0.02
    )
    animation_region: str = opt(
        'all',
        'which part moves: expression (exp), pose, lip, eyes or all',
        choices=ANIMATION_REGIONS,
    )
    flag_stitching: bool = opt(
        True,
        'stitching module: keeps the animated face aligned with the '
        'source around it when pasted back',
    )
    flag_eye_retargeting: bool = opt(False, 'follow the driving eye openness (eye retargeting)')
    flag_lip_retargeting: bool = opt(False, 'follow the driving lip openness (lip retargeting)')
    eyes_retargeting_multiplier: float = opt(
        1.0, 'scale of the eye retargeting offsets', 0.01, 10.0, 0.01
    )
    lip_retargeting_multiplier: float = opt(
        1.0, 'scale of the lip retargeting offsets', 0.01, 10.0, 0.01
    )
    flag_normalize_lip: bool = opt(
        False, 'close the source lips before animating (ComfyUI: lip_zero)'
    )
    lip_normalize_threshold: float = opt(
        0.03,
        'lip normalisation closes source lips open at least this much (lip-open ratio)',
        0.0,
        1.0,
        0.01,
    )
    flag_source_video_eye_retargeting: bool = opt(
        False, 'video source: give every frame the eye openness of the first source frame'
    )
    source_video_eye_retargeting_threshold: float = opt(
        0.18,
        'video source eye retargeting: first frames with an eye-open ratio below this are '
        'treated as closed',
        0.0,
        1.0,
        0.01,
    )
    driving_smooth_observation_variance: float = opt(
        3e-7,
        'video source: motion smoothing (Kalman observation variance; larger is smoother)',
        1e-11,
        1e-2,
        1e-8,
    )
    motion_smoothing: str = opt(
        'none',
        'steady the driving motion (rotation, translation, scale, expression) of any source: '
        'one-euro (causal, adapts to speed) or kalman (forward-backward, no lag)',
        choices=MOTION_SMOOTHING,
    )
    motion_smoothing_strength: float = opt(
        1.0,
        'how much motion smoothing (higher: steadier; one-euro also lags more)',
        0.05,
        20.0,
        0.05,
    )
    # cropping and output
    flag_do_crop: bool = opt(True, 'crop the source to the face (off: use the whole source)')
    flag_pasteback: bool = opt(True, 'paste the animated face back into the source')
    flag_crop_driving_video: bool = opt(
        False, 'crop the driving video to the face (always done for a non-square driving video)'
    )
    flag_do_rot: bool = opt(SOURCE_CROP.flag_do_rot, 'rotate the source crop to an upright face')
    dsize: int = opt(SOURCE_CROP.dsize, 'side of the face crops in pixels', 64, 2048, 1)
    scale: float = opt(
        SOURCE_CROP.scale, 'source crop scale (larger: more around the face)', 1.0, 4.0, 0.01
    )
    vx_ratio: float = opt(
        SOURCE_CROP.vx_ratio, 'source crop x offset (fraction of its side)', -1.0, 1.0, 0.001
    )
    vy_ratio: float = opt(
        SOURCE_CROP.vy_ratio,
        'source crop y offset (fraction of its side; negative moves it up)',
        -1.0,
        1.0,
        0.001,
    )
    scale_crop_driving_video: float = opt(DRIVING_CROP.scale, 'driving crop scale', 1.0, 4.0, 0.01)
    vx_ratio_crop_driving_video: float = opt(
        DRIVING_CROP.vx_ratio, 'driving crop x offset', -1.0, 1.0, 0.001
    )
    vy_ratio_crop_driving_video: float = opt(
        DRIVING_CROP.vy_ratio, 'driving crop y offset', -1.0, 1.0, 0.001
    )
    source_max_dim: int = opt(
        1280, 'longest side of the source, larger ones are resized (0: no limit)', 0, None, 1
    )
    source_division: int = opt(2, 'source sides are cut to a multiple of this', 1, 256, 1)
    face_index: int = opt(0, 'which face when there are several (0: the largest)', 0, None, 1)
    faces: str = opt(
        '',
        "animate several faces of the source: 'all', or indices counted largest first such as "
        "'0,2' (a video: the first frame's faces, then those that come in later; empty: the one "
        'face of face_index)',
    )
    crop_box: Optional[Tuple[float, float, float, float]] = opt(
        None,
        'explicit source crop box x0,y0,x1,y1 in pixels, e.g. for any animal (None: detect '
        'the face)',
    )
    audio_priority: str = opt(
        'driving', 'whose audio the output keeps when both have one', choices=('source', 'driving')
    )
    output_fps: float = opt(25.0, 'output frame rate when neither input has one', 1.0, 1e3, 0.01)
    flag_write_gif: bool = opt(
        False,
        'also write <source>--<driving>.gif, the result as an '
        'animated gif 256 pixels wide (video outputs only)',
    )
    flag_write_concat: bool = opt(
        True, 'also write <source>--<driving>_concat.mp4, driving | source | result side by side'
    )

    def __post_init__(self):
        for name in SCHEMA:
            check_option(name, getattr(self, name))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


SCHEMA = {f.name: f for f in dataclasses.fields(AnimateOptions)}


def _range(m):
    return f'[{m["min"]}, {"inf" if m["max"] is None else m["max"]}]'


def check_number(name, value, lo=None, hi=None, *, integer=False, given=None):
    """`value` if it is a number (an integer when `integer`) in [lo, hi] (None: unbounded), else
    a ValueError '<name> must be <what is valid>, got <given, default: the value>'. The one range
    rule of the animation options and of every numeric command-line flag."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        expected = 'a number'
    elif not ((lo is None or lo <= value) and (hi is None or value <= hi)):
        if lo is not None and hi is not None:
            expected = f'in [{lo}, {hi}]'
        else:
            expected = f'>= {lo}' if hi is None else f'<= {hi}'
    elif integer and not float(value).is_integer():
        expected = 'an integer'
    else:
        return value
    raise ValueError(f'{name} must be {expected}, got {repr(value) if given is None else given}')


def _is_box(box):
    if isinstance(box, str):
        return False
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        return False
    return x1 > x0 and y1 > y0


def check_option(name, value):
    """`value` if it is valid for field `name`, else a ValueError naming both and what is valid."""
    f, m = SCHEMA[name], SCHEMA[name].metadata
    if f.type is bool:
        valid, expected = not isinstance(value, str) and value in (False, True), 'True or False'
    elif m['choices']:
        valid, expected = value in m['choices'], f'one of {m["choices"]}'
    elif name == 'crop_box':
        valid, expected = value is None or _is_box(value), 'x0,y0,x1,y1 with x1>x0 and y1>y0'
    elif name == 'faces':
        valid, expected = parse_faces(value) is not False, "'all', or indices such as '0,2'"
    else:
        return check_number(name, value, m['min'], m['max'], integer=f.type is int)
    if not valid:
        raise ValueError(f'{name} must be {expected}, got {value!r}')
    return value


def coerce_option(name, value):
    """A front end's raw value (a number, a numeric or box string) as field `name`'s type."""
    kind = SCHEMA[name].type
    if kind in (bool, str):
        return kind(value)
    if name == 'crop_box':
        return parse_box(value) if value is None or isinstance(value, str) else tuple(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f'{name} must be a number, got {value!r}') from None
    return int(number) if kind is int and number.is_integer() else number


def options_from_values(values, base=None, **overrides):
    """AnimateOptions from raw front-end values keyed by field name (other keys are ignored),
    applied onto `base` (default: AnimateOptions()), then `overrides`."""
    changes = {k: coerce_option(k, v) for k, v in values.items() if k in SCHEMA}
    return (base or AnimateOptions()).replace(**changes, **overrides)


def parse_faces(text):
    """The `faces` option: '' -> None (one face, face_index); 'all' -> 'all'; '0,2' -> (0, 2)
    (distinct, in the order given); False when the text is none of these."""
    if not isinstance(text, str):
        return False
    text = text.strip().lower()
    if not text:
        return None
    if text == 'all':
        return 'all'
    try:
        idx = tuple(int(v) for v in text.split(','))
    except ValueError:
        return False
    return idx if all(i >= 0 for i in idx) and len(set(idx)) == len(idx) else False


def parse_box(text):
    """'x0,y0,x1,y1' -> a tuple of 4 floats; None for an empty text."""
    if not (text or '').strip():
        return None
    try:
        box = tuple(float(v) for v in text.split(','))
    except ValueError:
        box = text  # named in check_option's error
    return check_option('crop_box', box)


# The command lines' other numeric flags (all integers): flag -> (min, max), None: unbounded.
# Their argparse types (`number_flag`) check them with check_number as the options above are
# checked, so every subcommand reports a bad number in the same one line.
FLAG_RANGES = {
    '--chunk': (1, None),  # frames per device batch (bench: a list of them)
    '--max-frames': (1, None),
    '--max-template-frames': (0, None),  # 0: no limit
    '--workers': (1, None),
    '--metrics': (0, None),  # 0: none
    '--repeats': (1, None),
    '--frames': (1, None),
    '--host-frames': (1, None),
    '--rss-frames': (1, None),
    '--rss-size': (16, None),
    '--frame-stride': (1, None),
    '--port': (1, 65535),
}


def parse_number(flag, text, lo=None, hi=None, *, integer=False):
    """A command-line number in any float spelling ('8', '8.0', '1e3', '-1e9'), checked by
    check_number; an argparse.ArgumentTypeError naming `flag` and the text as given."""
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{flag} must be a number, got {text!r}') from None
    if integer and number.is_integer():
        number = int(number)
    try:
        return check_number(flag, number, lo, hi, integer=integer, given=text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def number_flag(flag, *, many=False):
    """The argparse `type` of a flag of FLAG_RANGES; many: a comma-separated list of such
    numbers ('1,4' -> (1, 4), '' -> ())."""
    lo, hi = FLAG_RANGES[flag]

    def parse(text):
        if many:
            values = (v.strip() for v in text.split(','))
            return tuple(parse_number(flag, v, lo, hi, integer=True) for v in values if v)
        return parse_number(flag, text, lo, hi, integer=True)

    parse.checked_number = True  # tests: no numeric flag escapes this check
    return parse


def _arg_type(name):
    flag, f = '--' + name.replace('_', '-'), SCHEMA[name]
    lo, hi = f.metadata['min'], f.metadata['max']

    def parse(text):
        if f.type in (int, float):
            return parse_number(flag, text, lo, hi, integer=f.type is int)
        try:
            return check_option(name, coerce_option(name, text))
        except ValueError as e:  # named by its flag, as the user wrote it
            message = str(e)
            if message.startswith(name):
                message = flag + message[len(name) :]
            raise argparse.ArgumentTypeError(message) from None

    parse.checked_number = True
    return parse


def add_option_arguments(parser):
    """One flag per AnimateOptions field, named as in the reference (--flag-stitching, ...), its
    help saying its default and its range or choices."""
    group = parser.add_argument_group("inference options (the reference's names and defaults)")
    for name, f in SCHEMA.items():
        m = f.metadata
        valid = (
            f'; one of {", ".join(m["choices"])}'
            if m['choices']
            else f'; range {_range(m)}'
            if m['min'] is not None
            else ''
        )
        kw = dict(
            dest=name,
            default=None,
            help=f'{m["help"]} (default: {f.default}{valid})'.replace('%', '%%'),
        )
        if f.type is bool:
            kw['action'] = argparse.BooleanOptionalAction
        elif m['choices']:
            kw['choices'] = m['choices']
        else:
            kw.update(type=_arg_type(name), metavar='X0,Y0,X1,Y1' if name == 'crop_box' else None)
        group.add_argument('--' + name.replace('_', '-'), **kw)


def options_from_args(args, **overrides):
    """AnimateOptions from parsed `add_option_arguments` flags (unset flags: the defaults)."""
    values = {k: v for k, v in vars(args).items() if k in SCHEMA and v is not None}
    return AnimateOptions(**{**values, **overrides})
