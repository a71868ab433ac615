"""Keyframed motion scripts: a driving input made of the editor's controls over time.

A script (YAML or JSON) is a duration, a frame rate and keyframes; each keyframe sets any of the
portrait editor's controls at a time (README "Motion scripts"):

    duration: 3        # seconds: round(duration * fps) frames
    fps: 25
    interpolation: smooth   # or linear (the default for every segment: smooth)
    keyframes:
      - time: 0             # nothing set: neutral
      - time: 1.0
        yaw: 15
        smile: 0.8
      - time: 2.5
        yaw: -10
        aaa: 60
        interpolation: linear   # the segment that ends here

Each control starts neutral at time 0, is interpolated between the keyframes that set it and holds
after the last of them; a control no keyframe sets stays neutral. The openness targets (eye_open,
lip_open), which have no neutral value, hold their first value before it. "smooth" is a cubic ease (smoothstep)
between two values: it passes through every keyframe, is monotone between two of them and never
leaves their range. Frame i is at time i / fps.

Controls and their ranges are the editor's sliders (sliders.py): `CONTROLS` maps the script's
names onto the EditSliders fields (sliders.py). The vowel shapes of ComfyUI-AdvancedLivePortrait are the same
expression edits as the editor's lip sliders under the names animators use (aaa = the mouth
open/close slider, eee = grin, woo = pursing), so one keyframe may not set a vowel and its slider
both. eye_open and lip_open are openness targets (the retargeting networks' ratios, 0 to 0.8).
"""

import dataclasses
import json
import os

import numpy as np

from liveportrait_jax.pipeline import sliders as table  # the editor's controls

EXTENSIONS = ('.yaml', '.yml', '.json')
INTERPOLATIONS = ('smooth', 'linear')

# Script name -> EditSliders field.
CONTROLS = {
    'pitch': 'head_pitch',
    'yaw': 'head_yaw',
    'roll': 'head_roll',
    'x': 'mov_x',
    'y': 'mov_y',
    'z': 'mov_z',
    'smile': 'smile',
    'wink': 'wink',
    'eyebrow': 'eyebrow',
    'gaze_x': 'eyeball_direction_x',
    'gaze_y': 'eyeball_direction_y',
    'eye_open': 'eye_ratio',
    'lip_open': 'lip_ratio',
    'pouting': 'lip_variation_zero',
    'pursing': 'lip_variation_one',
    'grin': 'lip_variation_two',
    'mouth': 'lip_variation_three',
    'aaa': 'lip_variation_three',
    'eee': 'lip_variation_two',
    'woo': 'lip_variation_one',
}
_SLIDERS = {s.name: s for s in table.SLIDERS}
RATIO_FIELDS = ('eye_ratio', 'lip_ratio')
_KEYFRAME_KEYS = ('time', 'interpolation')
_TOP_KEYS = ('duration', 'fps', 'interpolation', 'keyframes')


class ScriptError(ValueError):
    """A motion script that cannot be used; the message names the file and where."""


def control_range(field):
    """(minimum, maximum, neutral) of an EditSliders field."""
    if field in RATIO_FIELDS:
        lo, hi, _ = table.RATIO_RANGE
        return lo, hi, None
    s = _SLIDERS[field]
    return s.minimum, s.maximum, s.neutral


@dataclasses.dataclass(frozen=True)
class MotionScript:
    """A validated script: keyframes as (time, {field: value}, interpolation into it)."""

    name: str
    duration: float
    fps: float
    keyframes: tuple

    @property
    def n_frames(self):
        return int(round(self.duration * self.fps))

    def values(self):
        """{EditSliders field: (n_frames,) float32} for every field some keyframe sets."""
        t = np.arange(self.n_frames, dtype=np.float64) / self.fps
        fields = sorted({f for _, vals, _ in self.keyframes for f in vals})
        out = {}
        for field in fields:
            keys = [(time, vals[field], how) for time, vals, how in self.keyframes if field in vals]
            neutral = control_range(field)[2]
            if neutral is not None and keys[0][0] > 0:  # from neutral at time 0
                keys.insert(0, (0.0, neutral, None))
            out[field] = _interpolate(t, keys).astype(np.float32)
        return out

    def sliders(self, i):
        """EditSliders of frame i."""
        return table.EditSliders(**{f: float(v[i]) for f, v in self.values().items()})

    def edit_arrays(self, num_kp=21):
        """Per-frame edits: angles (N, 3) pitch/yaw/roll deltas in degrees; exp (N, K, 3) the
        expression edits (sliders.EXPRESSION_EDITS, as sliders.expression_delta per frame);
        mov_z (N,) scale factors; eye_ratio / lip_ratio (N,) openness targets, or None where no
        keyframe sets them. A neutral script gives zeros, ones and None."""
        n, vals = self.n_frames, self.values()

        def get(field):
            return vals.get(field, np.full(n, control_range(field)[2], np.float32))

        angles = np.stack([get('head_pitch'), get('head_yaw'), get('head_roll')], axis=1)
        exp = np.zeros((n, num_kp, 3), np.float64)
        for field, entries in table.EXPRESSION_EDITS.items():
            if field not in vals:
                continue
            v = vals[field].astype(np.float64)
            if isinstance(entries[0][0], tuple):  # (for v > 0, for v < 0), as the reference
                parts = ((entries[0], v > 0), (entries[1], v < 0))
            else:
                parts = ((entries, np.ones(n, bool)),)
            for group, where in parts:
                for kp, axis, coef in group:
                    exp[:, kp, axis] += np.where(where, v * coef, 0.0)
        return {
            'angles': angles.astype(np.float32),
            'exp': exp.astype(np.float32),
            'mov_z': get('mov_z').astype(np.float32),
            'eye_ratio': vals.get('eye_ratio'),
            'lip_ratio': vals.get('lip_ratio'),
        }


def _interpolate(t, keys):
    """Values at times t from keys [(time, value, interpolation into it)], held outside."""
    times = np.array([k[0] for k in keys])
    values = np.array([k[1] for k in keys], np.float64)
    out = np.interp(t, times, values)  # linear, and held before the first / after the last
    seg = np.searchsorted(times, t, side='right')  # keyframe index ending each time's segment
    for j in range(1, len(keys)):
        if keys[j][2] != 'smooth':
            continue
        inside = (seg == j) & (t > times[j - 1]) & (t < times[j])
        u = (t[inside] - times[j - 1]) / (times[j] - times[j - 1])
        out[inside] = values[j - 1] + (values[j] - values[j - 1]) * u * u * (3.0 - 2.0 * u)
    return out


def _number(value, where, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScriptError(f'{where}: {what} must be a number, got {value!r}')
    if not np.isfinite(value):
        raise ScriptError(f'{where}: {what} must be finite, got {value!r}')
    return float(value)


def _interpolation(value, where):
    if value not in INTERPOLATIONS:
        raise ScriptError(f'{where}: interpolation must be one of {INTERPOLATIONS}, got {value!r}')
    return value


def parse_script(data, name='<script>'):
    """A MotionScript from a parsed dict; ScriptError naming `name`, the keyframe and the control
    for anything invalid."""
    if not isinstance(data, dict):
        raise ScriptError(f'{name!r}: a motion script is a mapping with duration, fps, keyframes')
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise ScriptError(f'{name!r}: unknown key(s) {unknown}; a script has {list(_TOP_KEYS)}')
    if 'duration' not in data:
        raise ScriptError(f'{name!r}: duration (seconds) is missing')
    duration = _number(data['duration'], repr(name), 'duration')
    fps = _number(data.get('fps', 25), repr(name), 'fps')
    if duration <= 0 or fps <= 0:
        raise ScriptError(f'{name!r}: duration and fps must be positive, got {duration}, {fps}')
    if round(duration * fps) < 1:
        raise ScriptError(f'{name!r}: duration * fps rounds to 0 frames')
    default = _interpolation(data.get('interpolation', 'smooth'), repr(name))
    frames = data.get('keyframes')
    if not isinstance(frames, list) or not frames:
        raise ScriptError(f'{name!r}: keyframes must be a non-empty list')
    keyframes, last = [], None
    for i, kf in enumerate(frames):
        where = f'{name!r}, keyframe {i}'
        if not isinstance(kf, dict) or 'time' not in kf:
            raise ScriptError(f'{where}: a keyframe is a mapping with a time (seconds)')
        time = _number(kf['time'], where, 'time')
        where = f'{name!r}, keyframe {i} (time {time:g})'
        if not 0 <= time <= duration:
            raise ScriptError(f'{where}: time must be within the duration [0, {duration:g}]')
        if last is not None and time <= last:
            raise ScriptError(f'{where}: times must increase (the keyframe before is at {last:g})')
        last = time
        how = _interpolation(kf.get('interpolation', default), where)
        values = {}
        for key, value in kf.items():
            if key in _KEYFRAME_KEYS:
                continue
            field = CONTROLS.get(key, key if key in _SLIDERS or key in RATIO_FIELDS else None)
            if field is None:
                raise ScriptError(
                    f'{where}: unknown control {key!r}; controls are {", ".join(CONTROLS)}'
                )
            if field in values:
                raise ScriptError(f'{where}: {key!r} sets {field}, which another control here sets')
            v = _number(value, where, key)
            lo, hi, _ = control_range(field)
            if not lo <= v <= hi:
                raise ScriptError(f'{where}: {key} must be in [{lo:g}, {hi:g}], got {v:g}')
            values[field] = v
        keyframes.append((time, values, how))
    return MotionScript(os.fspath(name), duration, fps, tuple(keyframes))


def is_script_path(path):
    return os.path.splitext(os.fspath(path))[1].lower() in EXTENSIONS


def load_script(path):
    """Reads and validates a .yaml / .yml / .json motion script (ScriptError naming the file)."""
    path = os.fspath(path)
    if not is_script_path(path):
        raise ScriptError(f'{path!r}: a motion script is {", ".join(EXTENSIONS)}')
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except OSError as e:
        raise ScriptError(f'{path!r}: cannot read the script ({e.strerror or e})') from None
    import yaml

    try:
        data = json.loads(text) if path.lower().endswith('.json') else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:  # json's errors are ValueErrors
        kind = 'JSON' if path.lower().endswith('.json') else 'YAML'
        raise ScriptError(f'{path!r}: not valid {kind}: {e}') from None
    return parse_script(data, path)


def _short_names():
    """EditSliders field -> the script's name for it (the first in CONTROLS)."""
    names = {}
    for short, field in CONTROLS.items():
        names.setdefault(field, short)
    return names


def script_from_sliders(keys, duration, fps=25.0, interpolation='smooth'):
    """A script dict from [(time, EditSliders)]: each keyframe lists its non-neutral controls
    (openness targets when set). The editor's "add keyframe" and ComfyUI's script node use it."""
    names, frames = _short_names(), []
    for time, sliders in sorted(keys, key=lambda k: k[0]):
        kf = {'time': float(time)}
        for field in (*_SLIDERS, *RATIO_FIELDS):
            v = getattr(sliders, field)
            if v is not None and v != control_range(field)[2]:
                kf[names[field]] = float(v)
        frames.append(kf)
    data = {'duration': float(duration), 'fps': float(fps), 'interpolation': interpolation}
    data['keyframes'] = frames
    parse_script(data)  # the same checks as a file gets
    return data


def dump_script(data, path):
    """The text of `data` as a YAML or JSON script, by `path`'s extension."""
    if os.fspath(path).lower().endswith('.json'):
        return json.dumps(data, indent=1) + '\n'
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def save_script(data, path):
    """Writes a script dict to a .yaml / .yml / .json file (atomically: temp file, rename)."""
    from liveportrait_jax.io import atomic_write_path

    path = os.fspath(path)
    if not is_script_path(path):
        raise ScriptError(f'{path!r}: a motion script is {", ".join(EXTENSIONS)}')
    parse_script(data, path)
    with atomic_write_path(path) as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(dump_script(data, path))
    return path
