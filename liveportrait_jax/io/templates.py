"""Motion templates (.pkl): per-frame driving motion saved by the reference, so a driving video need
not be re-processed.

Three layouts exist in the wild, all dicts pickled by the reference; per-frame arrays carry a leading
batch axis of 1, float32:

  (a) motion-only  {'n_frames', 'output_fps', 'motion': [{'scale' (1,1), 'R' (1,3,3), 'exp' (1,21,3),
                   't' (1,3)}, ...]}                                   e.g. the reference's wink.pkl
  (b) legacy       as (a) but the rotation is named 'R_d', plus 'c_d_eyes_lst': [(1,2), ...] and
                   'c_d_lip_lst': [(1,1), ...]                         e.g. the reference's d1.pkl
  (c) current      as (a) plus per-frame 'kp' (1,21,3) and 'x_s' (1,21,3), plus 'c_eyes_lst':
                   [(1,2), ...] and 'c_lip_lst': [(1,1), ...]          (make_motion_template)

All three load into one MotionTemplate with frames stacked on axis 0; save_template writes layout (c)
so the reference can read our templates. Loading never executes pickled code (see safe_pickle).

Sizes are checked before anything is built from them: a pickle memoises repeated objects, so a
4 MB file can hold a list of two million references to one frame (hours of work to animate, GBs of
stacked arrays) or a per-frame value that is a list of a million lists. The frame count is limited
to `max_frames` (DEFAULT_MAX_TEMPLATE_FRAMES unless the caller says otherwise), and a per-frame value
of more than _MAX_FRAME_VALUES numbers is refused before numpy converts it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
from typing import Any, Mapping

import numpy as np

from .atomic import atomic_write_path
from .errors import InputError, describe
from .safe_pickle import safe_load

NUM_KP = 21  # implicit keypoints of every released LivePortrait model (human and animal)

# Longest motion template accepted by default: one hour at 30 fps. Real templates are the length of
# a driving clip (seconds to minutes); a million-frame "template" is a few MB of pickle (repeated
# references) that would animate for days. Callers pass a larger max_frames, or None, to allow longer
# ones; the error message points command-line users at --max-template-frames.
DEFAULT_MAX_TEMPLATE_FRAMES = 108_000

# Per-frame shape of each field, without the frame axis.
_FRAME_SHAPES: dict[str, tuple[int, ...]] = {
    'R': (3, 3),
    'exp': (NUM_KP, 3),
    't': (3,),
    'scale': (1,),
    'kp': (NUM_KP, 3),
    'x_s': (NUM_KP, 3),
    'c_eyes': (2,),
    'c_lip': (1,),
}
# Per-frame values above this many numbers are refused unread (the largest field has 63).
_MAX_FRAME_VALUES = 4096
_REQUIRED = ('R', 'exp', 't', 'scale')
_OPTIONAL_MOTION = ('kp', 'x_s')


def _accepted_shapes(shape: tuple[int, ...]) -> set[tuple[int, ...]]:
    """Exact shape, with the reference's batch axis of 1, or flattened (the (1,63) keypoint form)."""
    size = math.prod(shape)
    shapes = {shape, (1, *shape), (size,), (1, size)}
    if size == 1:
        shapes.add(())
    return shapes


def _value_size_exceeds(value: Any, limit: int) -> bool:
    """True when `value` (an array, number, or nested lists/tuples of them) holds more than `limit`
    numbers or is nested absurdly; looks at no more than a few times `limit` objects, so a small
    pickle of memoised references cannot make it (or the numpy conversion it guards) run long."""
    if isinstance(value, np.ndarray):
        return value.size > limit
    budget = 4 * limit + 64  # lists/tuples and leaves visited, however nested
    leaves, stack = 0, [value]
    while stack:
        item = stack.pop()
        budget -= 1
        if budget < 0:
            return True
        if isinstance(item, (list, tuple)):
            if len(item) > limit:
                return True
            stack.extend(item)
        else:
            leaves += item.size if isinstance(item, np.ndarray) else 1
            if leaves > limit:
                return True
    return False


def _as_frame_array(value: Any, field: str, where: str) -> np.ndarray:
    expected = _FRAME_SHAPES[field]
    # Sizes a little off get the precise shape error below; absurd ones are refused before numpy
    # converts them (which for nested lists could take hours and all memory).
    if _value_size_exceeds(value, _MAX_FRAME_VALUES):
        raise InputError(
            f"{where}: '{field}' holds more than {_MAX_FRAME_VALUES} values, expected shape "
            f'{expected} (optionally with a leading batch axis of 1)'
        )
    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged lists etc.
        raise InputError(f"{where}: '{field}' is not an array ({e})") from None
    if arr.dtype.kind not in 'fiub':
        raise InputError(f"{where}: '{field}' must be numeric, got dtype {arr.dtype}")
    if arr.shape not in _accepted_shapes(expected):
        raise InputError(
            f"{where}: '{field}' has shape {arr.shape}, expected {expected} "
            f'(optionally with a leading batch axis of 1)'
        )
    with np.errstate(
        over='ignore'
    ):  # float64 beyond float32 range becomes inf, rejected by the caller
        return arr.reshape(expected).astype(np.float32)


def _stack_field(values: Any, field: str, n: int, source: str) -> np.ndarray:
    """Validate an (N, *shape) array, or a per-frame list, into float32 (N, *shape)."""
    expected = _FRAME_SHAPES[field]
    if isinstance(values, np.ndarray) and values.dtype.kind in 'fiub' and values.ndim >= 1:
        frames = list(values) if values.shape[0] == n else None
    elif isinstance(values, (list, tuple)):
        frames = list(values)
    else:
        raise InputError(
            f"{source}: '{field}' must be a per-frame list or an array with {n} rows, "
            f'got {type(values).__name__}'
        )
    if frames is None or len(frames) != n:
        got = values.shape if isinstance(values, np.ndarray) else f'{len(frames)} entries'
        raise InputError(f"{source}: '{field}' has {got}, expected {n} frames of shape {expected}")
    out = np.stack(
        [_as_frame_array(v, field, f'{source}: frame {i}') for i, v in enumerate(frames)]
    )
    if not np.all(np.isfinite(out)):
        raise InputError(f"{source}: '{field}' contains NaN or infinite values")
    return out


@dataclasses.dataclass(eq=False)
class MotionTemplate:
    """Driving motion for N frames; arrays are float32 with the frame axis first.

    R: (N,3,3) rotation matrices (row-vector convention: x @ R). exp: (N,21,3) expression deltas.
    t: (N,3) translation. scale: (N,1). kp, x_s: (N,21,3) canonical and transformed keypoints
    (only in templates written by the current reference). c_eyes: (N,2) left/right eye-open ratios,
    c_lip: (N,1) lip-open ratio (absent from motion-only templates). fps: the template's output fps,
    or None when it does not say (the reference then uses its default, 25).
    """

    R: np.ndarray
    exp: np.ndarray
    t: np.ndarray
    scale: np.ndarray
    kp: np.ndarray | None = None
    x_s: np.ndarray | None = None
    c_eyes: np.ndarray | None = None
    c_lip: np.ndarray | None = None
    fps: float | None = None
    layout: str = 'arrays'  # which layout it was read from: motion-only, legacy, current, or arrays
    source: str = dataclasses.field(default='MotionTemplate', repr=False)

    def __post_init__(self):
        n = np.shape(self.R)[0] if np.ndim(self.R) >= 1 else -1
        if n <= 0:
            raise InputError(
                f"{self.source}: 'R' must have shape (N,3,3) with N >= 1, got {np.shape(self.R)}"
            )
        for field in _FRAME_SHAPES:
            value = getattr(self, field)
            if value is None:
                if field in _REQUIRED:
                    raise InputError(f"{self.source}: '{field}' is required")
                continue
            arr = np.asarray(value)
            expected = (n, *_FRAME_SHAPES[field])
            if arr.shape != expected:
                raise InputError(
                    f"{self.source}: '{field}' has shape {arr.shape}, expected {expected}"
                )
            if arr.dtype.kind not in 'fiub':
                raise InputError(f"{self.source}: '{field}' must be numeric, got dtype {arr.dtype}")
            setattr(self, field, np.ascontiguousarray(arr, dtype=np.float32))
        if self.fps is not None:
            self.fps = _check_fps(self.fps, self.source)

    @property
    def n_frames(self) -> int:
        return int(self.R.shape[0])

    def __len__(self) -> int:
        return self.n_frames


def _check_fps(value: Any, source: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise InputError(f"{source}: 'output_fps' must be a number, got {value!r}")
    fps = float(value)
    if not math.isfinite(fps) or fps <= 0:
        raise InputError(f"{source}: 'output_fps' must be positive, got {value!r}")
    return fps


def _first_key(mapping: Mapping, *keys: str):
    for k in keys:
        if k in mapping:
            return k
    return None


def _check_frame_count(n: int, max_frames: int | None, source: str) -> None:
    if max_frames is not None and n > max_frames:
        raise InputError(
            f'{source}: motion template has {n} frames, more than the limit of {max_frames} '
            '(raise it with --max-template-frames)'
        )


def template_from_dict(
    obj: Any,
    source: str = '<template>',
    *,
    max_frames: int | None = DEFAULT_MAX_TEMPLATE_FRAMES,
) -> MotionTemplate:
    """Normalise any of the three reference layouts (module docstring) into a MotionTemplate.

    More than `max_frames` frames (None: no limit) is an InputError, raised before any per-frame
    value is looked at.
    """
    if not isinstance(obj, dict):
        raise InputError(
            f'{source}: not a motion template: expected a dict, got {type(obj).__name__}'
        )
    motion = obj.get('motion')
    if not isinstance(motion, (list, tuple)):
        raise InputError(
            f"{source}: not a motion template: no 'motion' list (keys: {sorted(map(str, obj))})"
        )
    n = len(motion)
    if n == 0:
        raise InputError(f'{source}: motion template has no frames')
    # Every layout has the 'motion' list, and its per-frame lists ('c_eyes_lst', 'c_d_lip_lst', ...)
    # must have the same length: this one check bounds them all before anything is stacked.
    _check_frame_count(n, max_frames, source)
    if 'n_frames' in obj:
        declared = obj['n_frames']
        if not isinstance(declared, (int, np.integer)) or int(declared) != n:
            raise InputError(f"{source}: 'n_frames' is {declared!r} but 'motion' has {n} frames")
    for i, frame in enumerate(motion):
        if not isinstance(frame, dict):
            raise InputError(
                f"{source}: frame {i} of 'motion' is a {type(frame).__name__}, expected a dict"
            )

    rot_key = _first_key(motion[0], 'R', 'R_d')  # 'R_d' in legacy templates
    if rot_key is None:
        raise InputError(
            f"{source}: frame 0 has no rotation 'R' (or legacy 'R_d'); "
            f'keys: {sorted(map(str, motion[0]))}'
        )
    keys = {'R': rot_key, 'exp': 'exp', 't': 't', 'scale': 'scale'}
    fields: dict[str, np.ndarray | None] = {}
    for field, key in keys.items():
        missing = [i for i, f in enumerate(motion) if key not in f]
        if missing:
            raise InputError(f"{source}: frame {missing[0]} has no '{key}'")
        fields[field] = _stack_field([f[key] for f in motion], field, n, source)
    for field in _OPTIONAL_MOTION:
        have = [field in f for f in motion]
        if all(have):
            fields[field] = _stack_field([f[field] for f in motion], field, n, source)
        elif any(have):
            raise InputError(
                f"{source}: '{field}' is present in some frames but missing from frame "
                f'{have.index(False)}'
            )

    eyes_key = _first_key(obj, 'c_eyes_lst', 'c_d_eyes_lst')
    lip_key = _first_key(obj, 'c_lip_lst', 'c_d_lip_lst')
    c_eyes = (
        None
        if eyes_key is None
        else _stack_field(obj[eyes_key], 'c_eyes', n, f"{source}: '{eyes_key}'")
    )
    c_lip = (
        None
        if lip_key is None
        else _stack_field(obj[lip_key], 'c_lip', n, f"{source}: '{lip_key}'")
    )

    fps = obj.get('output_fps')
    fps = None if fps is None else _check_fps(fps, source)

    if (
        rot_key == 'R_d'
        or (eyes_key or '').startswith('c_d_')
        or (lip_key or '').startswith('c_d_')
    ):
        layout = 'legacy'
    elif eyes_key is None and lip_key is None:
        layout = 'motion-only'
    else:
        layout = 'current'
    return MotionTemplate(
        c_eyes=c_eyes, c_lip=c_lip, fps=fps, layout=layout, source=source, **fields
    )


def load_template(
    path: os.PathLike | str, max_frames: int | None = DEFAULT_MAX_TEMPLATE_FRAMES
) -> MotionTemplate:
    """Read a motion template .pkl of any known layout, without executing pickled code.

    Templates longer than `max_frames` (default DEFAULT_MAX_TEMPLATE_FRAMES, one hour at 30 fps;
    None: no limit) are refused with an InputError.
    """
    name = describe(path)
    return template_from_dict(safe_load(path), name, max_frames=max_frames)


def template_to_dict(template: MotionTemplate) -> dict:
    """The current reference layout (c), float32 arrays with the batch axis of 1 restored.

    Fields the template lacks (kp/x_s, eye/lip ratios) are omitted rather than invented.
    """
    motion = []
    for i in range(template.n_frames):
        frame = {
            'scale': template.scale[i][None],
            'R': template.R[i][None],
            't': template.t[i][None],
            'exp': template.exp[i][None],
        }
        for field in _OPTIONAL_MOTION:
            value = getattr(template, field)
            if value is not None:
                frame[field] = value[i][None]
        motion.append({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in frame.items()})
    out: dict[str, Any] = {'n_frames': template.n_frames}
    if template.fps is not None:
        # The reference stores int(fps); keep fractional rates such as 29.97 exact.
        out['output_fps'] = (
            int(template.fps) if float(template.fps).is_integer() else float(template.fps)
        )
    out['motion'] = motion
    if template.c_eyes is not None:
        out['c_eyes_lst'] = [
            np.ascontiguousarray(v[None], dtype=np.float32) for v in template.c_eyes
        ]
    if template.c_lip is not None:
        out['c_lip_lst'] = [np.ascontiguousarray(v[None], dtype=np.float32) for v in template.c_lip]
    return out


def save_template(path: os.PathLike | str, template: MotionTemplate) -> str:
    """Write `template` in the current reference layout (plain pickle, protocol 4), atomically."""
    data = pickle.dumps(template_to_dict(template), protocol=4)
    with atomic_write_path(path) as tmp:
        with open(tmp, 'wb') as f:
            f.write(data)
    return os.path.abspath(os.fspath(path))
