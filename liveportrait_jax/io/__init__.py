"""Input/output: images, videos, motion templates; clear errors naming the file, atomic writes."""

from .atomic import AtomicPath, atomic_write_path
from .compose import concat_side_by_side
from .errors import InputError, OutputError, UnsafePickleError
from .images import load_image, save_image
from .safe_pickle import safe_load
from .templates import (
    DEFAULT_MAX_TEMPLATE_FRAMES,
    MotionTemplate,
    load_template,
    save_template,
    template_from_dict,
    template_to_dict,
)
from .video import (
    DamagedVideoWarning,
    VideoInfo,
    VideoWriter,
    add_audio_from,
    has_audio,
    iter_video_frames,
    load_video_frames,
    probe_video,
    write_gif,
    write_video,
)

__all__ = [
    'AtomicPath',
    'atomic_write_path',
    'concat_side_by_side',
    'InputError',
    'OutputError',
    'UnsafePickleError',
    'load_image',
    'save_image',
    'safe_load',
    'DEFAULT_MAX_TEMPLATE_FRAMES',
    'MotionTemplate',
    'load_template',
    'save_template',
    'template_from_dict',
    'template_to_dict',
    'DamagedVideoWarning',
    'VideoInfo',
    'VideoWriter',
    'add_audio_from',
    'has_audio',
    'iter_video_frames',
    'load_video_frames',
    'probe_video',
    'write_gif',
    'write_video',
]
