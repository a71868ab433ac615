"""The portrait editor's controls: the sliders (names, ranges, neutral values as in the reference
app), the expression edit each one makes, and `EditSliders`, one value for each. Their one home:
the editor (editing.py), motion scripts (motion_script.py), the app and ComfyUI read them here.
"""

import dataclasses
from typing import Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class Slider:
    name: str
    label: str
    minimum: float
    maximum: float
    step: float
    neutral: float


# The reference app's sliders: names, labels, ranges and steps as there.
POSE_SLIDERS = (
    Slider('head_pitch', 'relative pitch', -15.0, 15.0, 1.0, 0.0),
    Slider('head_yaw', 'relative yaw', -25.0, 25.0, 1.0, 0.0),
    Slider('head_roll', 'relative roll', -15.0, 15.0, 1.0, 0.0),
    Slider('mov_x', 'x-axis movement', -0.19, 0.19, 0.01, 0.0),
    Slider('mov_y', 'y-axis movement', -0.19, 0.19, 0.01, 0.0),
    Slider('mov_z', 'z-axis movement', 0.9, 1.2, 0.01, 1.0),
)
EXPRESSION_SLIDERS = (
    Slider('lip_variation_zero', 'pouting', -0.09, 0.09, 0.01, 0.0),
    Slider('lip_variation_one', 'pursing', -20.0, 15.0, 0.01, 0.0),
    Slider('lip_variation_two', 'grin', 0.0, 15.0, 0.01, 0.0),
    Slider('lip_variation_three', 'lip close <-> open', -90.0, 120.0, 1.0, 0.0),
    Slider('smile', 'smile', -0.3, 1.3, 0.01, 0.0),
    Slider('wink', 'wink', 0.0, 39.0, 0.01, 0.0),
    Slider('eyebrow', 'eyebrow', -30.0, 30.0, 0.01, 0.0),
    Slider('eyeball_direction_x', 'eye gaze (horizontal)', -30.0, 30.0, 0.01, 0.0),
    Slider('eyeball_direction_y', 'eye gaze (vertical)', -63.0, 63.0, 0.01, 0.0),
)
SLIDERS = POSE_SLIDERS + EXPRESSION_SLIDERS
SLIDER_NAMES = tuple(s.name for s in SLIDERS)
RATIO_RANGE = (0.0, 0.8, 0.01)  # target eyes-open / lip-open ratio sliders

# Expression edits: slider -> ((keypoint, axis, coefficient), ...); the slider value v adds
# v * coefficient to exp[keypoint, axis] (axis 0 = x, 1 = y, 2 = z). Entries may repeat (they add).
# A pair (for v > 0, for v < 0) where the reference treats the two signs differently.
_GAZE_Y = ((11, 1, -0.001), (15, 1, -0.001))
# Looking up or down also lowers or raises the lids: the reference's "blink" term, -v / 2 times
# (11, y, -0.001), (13, y, 0.0003), (15, y, -0.001), (16, y, 0.0003).
_GAZE_Y_LIDS = ((11, 1, 0.0005), (13, 1, -0.00015), (15, 1, 0.0005), (16, 1, -0.00015))
EXPRESSION_EDITS = {
    'smile': (
        (20, 1, -0.01),
        (14, 1, -0.02),
        (17, 1, 0.0065),
        (17, 2, 0.003),
        (13, 1, -0.00275),
        (16, 1, -0.00275),
        (3, 1, -0.0035),
        (7, 1, -0.0035),
    ),
    'wink': ((11, 1, 0.001), (13, 1, -0.0003), (17, 0, 0.0003), (17, 1, 0.0003), (3, 1, -0.0003)),
    'eyebrow': (
        ((1, 1, 0.001), (2, 1, -0.001)),
        ((1, 0, -0.001), (2, 0, 0.001), (1, 1, 0.0003), (2, 1, -0.0003)),
    ),
    'eyeball_direction_x': (((11, 0, 0.0007), (15, 0, 0.001)), ((11, 0, 0.001), (15, 0, 0.0007))),
    'eyeball_direction_y': _GAZE_Y + _GAZE_Y_LIDS,
    'lip_variation_zero': ((19, 0, 1.0),),
    'lip_variation_one': ((14, 1, 0.001), (3, 1, -0.0005), (7, 1, -0.0005), (17, 2, -0.0005)),
    'lip_variation_two': ((20, 2, -0.001), (20, 1, -0.001), (14, 1, -0.001)),
    'lip_variation_three': ((19, 1, 0.001), (19, 2, 0.0001), (17, 1, -0.0001)),
    'mov_x': ((5, 0, -1.0),),  # the reference moves keypoint 5 by -mov_x
    'mov_y': ((5, 1, 1.0),),
}
_SIGNED = ('eyebrow', 'eyeball_direction_x')


@dataclasses.dataclass(frozen=True)
class EditSliders:
    """Slider values; every default is neutral (no edit).

    eye_ratio / lip_ratio: target eyes-open / lip-open ratios (0 to 0.8, as measured on the
    landmarks); None, or the source's own ratio rounded to 2 decimals, leaves them alone.
    """

    eye_ratio: Optional[float] = None
    lip_ratio: Optional[float] = None
    head_pitch: float = 0.0
    head_yaw: float = 0.0
    head_roll: float = 0.0
    mov_x: float = 0.0
    mov_y: float = 0.0
    mov_z: float = 1.0
    lip_variation_zero: float = 0.0
    lip_variation_one: float = 0.0
    lip_variation_two: float = 0.0
    lip_variation_three: float = 0.0
    smile: float = 0.0
    wink: float = 0.0
    eyebrow: float = 0.0
    eyeball_direction_x: float = 0.0
    eyeball_direction_y: float = 0.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None and f.name in ('eye_ratio', 'lip_ratio'):
                continue
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise ValueError(f'{f.name} must be a number, got {v!r}') from None
            if not np.isfinite(v):
                raise ValueError(f'{f.name} must be finite, got {v!r}')
            object.__setattr__(self, f.name, v)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def expression_delta(sliders, num_kp=21):
    """(K, 3) float32: the sum of the expression edits of `sliders` (EditSliders)."""
    delta = np.zeros((num_kp, 3), np.float64)
    for name, entries in EXPRESSION_EDITS.items():
        v = getattr(sliders, name)
        if v == 0:
            continue
        if name in _SIGNED:
            entries = entries[0] if v > 0 else entries[1]
        for kp, axis, coef in entries:
            delta[kp, axis] += v * coef
    return delta.astype(np.float32)
