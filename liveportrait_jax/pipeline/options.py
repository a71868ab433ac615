"""Animation options: the reference's inference arguments, same names, same defaults.

Defaults follow the reference's command line (src/config/argument_config.py). The ComfyUI node's
parameters map onto these: dsize, scale, vx_ratio, vy_ratio; lip_zero -> flag_normalize_lip;
eye_retargeting / lip_retargeting -> flag_eye_retargeting / flag_lip_retargeting with
eyes_retargeting_multiplier / lip_retargeting_multiplier scaling the retargeting offsets;
stitching -> flag_stitching; relative -> flag_relative_motion.
"""

import dataclasses
from typing import Literal, Optional, Tuple

ANIMATION_REGIONS = ('exp', 'pose', 'lip', 'eyes', 'all')
DRIVING_OPTIONS = ('expression-friendly', 'pose-friendly')

# Keypoint indices the reference animates per region (its pipeline's hard-coded index sets).
EXP_FULL_IDX = (1, 2, 6, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)
LIP_IDX = (6, 12, 14, 17, 19, 20)
EYES_IDX = (11, 13, 15, 16, 18)


@dataclasses.dataclass(frozen=True)
class AnimateOptions:
    # motion
    flag_relative_motion: bool = True
    driving_option: Literal['expression-friendly', 'pose-friendly'] = 'expression-friendly'
    driving_multiplier: float = 1.0
    animation_region: Literal['exp', 'pose', 'lip', 'eyes', 'all'] = 'all'
    flag_stitching: bool = True
    flag_eye_retargeting: bool = False
    flag_lip_retargeting: bool = False
    eyes_retargeting_multiplier: float = 1.0
    lip_retargeting_multiplier: float = 1.0
    flag_normalize_lip: bool = False
    lip_normalize_threshold: float = 0.03
    flag_source_video_eye_retargeting: bool = False
    source_video_eye_retargeting_threshold: float = 0.18
    driving_smooth_observation_variance: float = 3e-7
    # cropping and output
    flag_do_crop: bool = True
    flag_pasteback: bool = True
    flag_crop_driving_video: bool = False
    flag_do_rot: bool = True
    dsize: int = 512
    scale: float = 2.3
    vx_ratio: float = 0.0
    vy_ratio: float = -0.125
    scale_crop_driving_video: float = 2.2
    vx_ratio_crop_driving_video: float = 0.0
    vy_ratio_crop_driving_video: float = -0.1
    source_max_dim: int = 1280
    source_division: int = 2
    face_index: int = 0
    crop_box: Optional[Tuple[float, float, float, float]] = None  # explicit box (animals)
    audio_priority: Literal['source', 'driving'] = 'driving'
    output_fps: float = 25.0  # used when neither the driving input nor the source gives one
    flag_write_gif: bool = False
    flag_write_concat: bool = True

    def __post_init__(self):
        if self.animation_region not in ANIMATION_REGIONS:
            raise ValueError(f'animation_region must be one of {ANIMATION_REGIONS}, '
                             f'got {self.animation_region!r}')
        if self.driving_option not in DRIVING_OPTIONS:
            raise ValueError(f'driving_option must be one of {DRIVING_OPTIONS}, '
                             f'got {self.driving_option!r}')
        if self.audio_priority not in ('source', 'driving'):
            raise ValueError(f"audio_priority must be 'source' or 'driving', "
                             f'got {self.audio_priority!r}')
        if self.dsize < 64:
            raise ValueError(f'dsize must be at least 64, got {self.dsize}')
        if self.crop_box is not None and len(self.crop_box) != 4:
            raise ValueError(f'crop_box must be x0,y0,x1,y1, got {self.crop_box}')

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)
