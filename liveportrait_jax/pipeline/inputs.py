"""Loading and cropping the animation inputs: source image/video, driving video/image/template."""

import dataclasses
import os
from typing import Optional

import cv2
import numpy as np

from liveportrait_jax import faces
from liveportrait_jax.io import (
    InputError,
    iter_video_frames,
    load_image,
    load_template,
    probe_video,
)

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
VIDEO_EXTS = ('.mp4', '.mov', '.avi', '.webm', '.mkv', '.m4v', '.gif')
TEMPLATE_EXTS = ('.pkl',)


def kind_of(path):
    """'image', 'video' or 'template' from the file name; a clear error otherwise."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise InputError(f'{p!r}: file not found')
    ext = os.path.splitext(p)[1].lower()
    if ext in IMAGE_EXTS:
        return 'image'
    if ext in VIDEO_EXTS:
        return 'video'
    if ext in TEMPLATE_EXTS:
        return 'template'
    raise InputError(
        f'{p!r}: unsupported file type {ext or "(no extension)"}; expected an image '
        f'({", ".join(IMAGE_EXTS)}), a video ({", ".join(VIDEO_EXTS)}) or a motion '
        'template (.pkl)'
    )


def resize_to_limit(img, max_dim=1280, division=2):
    """The reference's source resizing: longest side <= max_dim, sides divisible by `division`."""
    h, w = img.shape[:2]
    if max_dim > 0 and max(h, w) > max_dim:
        if h > w:
            new_h, new_w = max_dim, int(w * (max_dim / h))
        else:
            new_w, new_h = max_dim, int(h * (max_dim / w))
        img = cv2.resize(img, (new_w, new_h))
        h, w = new_h, new_w
    division = max(1, int(division))
    nh, nw = h - h % division, w - w % division
    if (nh, nw) != (h, w):
        img = np.ascontiguousarray(img[:nh, :nw])
    if nh == 0 or nw == 0:
        raise InputError(f'image of size {w}x{h} is too small')
    return img


@dataclasses.dataclass
class SourceInput:
    """A cropped source: S frames (1 for an image)."""

    path: str
    is_video: bool
    frames: list  # originals (H, W, 3) uint8, after resize_to_limit
    crops_256: np.ndarray  # (S, 256, 256, 3) uint8
    landmarks: Optional[np.ndarray]  # (S, 478, 2) in crop pixels, or None (no face found)
    M_c2o: Optional[np.ndarray]  # (S, 3, 3) crop (dsize) -> original, or None without cropping
    fps: Optional[float]
    has_audio: bool = False


@dataclasses.dataclass
class DrivingInput:
    """Driving frames (cropped to 256) or a motion template."""

    path: str
    kind: str  # 'video', 'image' or 'template'
    n_frames: int
    fps: Optional[float]
    crops_256: Optional[np.ndarray] = None  # (N, 256, 256, 3) uint8 (not for templates)
    eye_ratio: Optional[np.ndarray] = None  # (N, 2) driving eye-open ratios
    lip_ratio: Optional[np.ndarray] = None  # (N, 1)
    template: object = None  # io.MotionTemplate for templates
    has_audio: bool = False

    @property
    def is_video(self):
        return self.n_frames > 1 if self.kind == 'template' else self.kind == 'video'


def _ratios(landmarks):
    if landmarks is None:
        return None, None
    return (
        faces.eye_close_ratio(landmarks).astype(np.float32),
        faces.lip_close_ratio(landmarks).astype(np.float32),
    )


def _resize_256(frames):
    return np.stack([cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA) for f in frames])


def _read_frames(path, kind, max_frames):
    """(frames, fps, has_audio) of an image (one frame, no fps) or a video."""
    if kind == 'image':
        return [load_image(path)], None, False
    info = probe_video(path)
    return list(iter_video_frames(path, max_frames=max_frames)), info.fps, info.has_audio


def load_source(path, options, *, animals=False, max_frames=None):
    """Reads and crops the source (image or video) with the source crop settings."""
    kind = kind_of(path)
    if kind == 'template':
        raise InputError(f'{path!r}: a motion template can drive an animation, not be its source')
    frames, fps, audio = _read_frames(path, kind, max_frames)
    return source_from_frames(
        frames,
        options,
        name=os.fspath(path),
        is_video=kind == 'video',
        fps=fps,
        has_audio=audio,
        animals=animals,
    )


def source_from_frames(
    frames, options, *, name='<source>', is_video=None, fps=None, has_audio=False, animals=False
):
    """Crops source frames (list or (S, H, W, 3) uint8 RGB): one image, or a video's frames."""
    frames = [
        resize_to_limit(_check_frame(f, name), options.source_max_dim, options.source_division)
        for f in frames
    ]
    if not frames:
        raise InputError(f'{name!r}: no source frames')
    is_video = len(frames) > 1 if is_video is None else is_video
    if not options.flag_do_crop:
        crops = _resize_256(frames)
        lms = []
        for f in frames:
            try:
                face = faces.detect_face(f, options.face_index, source_name=name)
                lms.append(face.landmarks * (256.0 / np.array([f.shape[1], f.shape[0]])))
            except faces.NoFaceError:
                lms = None
                break
        return SourceInput(
            name,
            is_video,
            frames,
            crops,
            None if lms is None else np.stack(lms).astype(np.float32),
            None,
            fps,
            has_audio,
        )
    crops, lms, mats = [], [], []
    for i, f in enumerate(frames):
        if options.crop_box is not None:
            res = faces.crop_by_box(f, options.crop_box, dsize=options.dsize)
        elif animals:
            res = faces.crop_animal(f, dsize=options.dsize, source_name=name)
        else:
            try:
                face = faces.detect_face(f, options.face_index, source_name=name)
            except faces.NoFaceError as e:
                raise faces.NoFaceError(
                    name, i if is_video else None, getattr(e, 'detail', '')
                ) from None
            res = faces.crop_source_image(
                f,
                face,
                dsize=options.dsize,
                scale=options.scale,
                vx_ratio=options.vx_ratio,
                vy_ratio=options.vy_ratio,
                flag_do_rot=options.flag_do_rot,
                source_name=name,
            )
        crops.append(res.image_256)
        lms.append(res.landmarks)
        mats.append(res.M_c2o)
    landmarks = None if any(lm is None for lm in lms) else np.stack(lms).astype(np.float32)
    return SourceInput(
        name, is_video, frames, np.stack(crops), landmarks, np.stack(mats), fps, has_audio
    )


def _check_frame(frame, name):
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise InputError(
            f'{name!r}: frames must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}'
        )
    return frame


def load_driving(path, options, *, max_frames=None):
    """Reads the driving input; videos and images are cropped when not square or when asked."""
    kind = kind_of(path)
    name = os.fspath(path)
    if kind == 'template':
        t = load_template(path)
        return DrivingInput(
            name, 'template', t.n_frames, t.fps, template=t, eye_ratio=t.c_eyes, lip_ratio=t.c_lip
        )
    frames, fps, audio = _read_frames(path, kind, max_frames)
    return driving_from_frames(
        frames, options, name=name, is_video=kind == 'video', fps=fps, has_audio=audio
    )


def driving_from_frames(
    frames, options, *, name='<driving>', is_video=None, fps=None, has_audio=False
):
    """Crops driving frames (list or (N, H, W, 3) uint8 RGB) and measures their eye/lip ratios."""
    frames = [_check_frame(f, name) for f in frames]
    if not frames:
        raise InputError(f'{name!r}: no driving frames')
    is_video = len(frames) > 1 if is_video is None else is_video
    h, w = frames[0].shape[:2]
    if options.flag_crop_driving_video or h != w:
        crops = faces.crop_driving_frames(
            frames,
            dsize=options.dsize,
            scale=options.scale_crop_driving_video,
            vx_ratio=options.vx_ratio_crop_driving_video,
            vy_ratio=options.vy_ratio_crop_driving_video,
            source_name=name,
        )
        crops_256, landmarks = crops.images_256, crops.landmarks
    else:
        crops_256 = _resize_256(frames)
        try:
            tracked = faces.track_faces(
                frames, options.face_index, source_name=name, on_missing='hold'
            )
            landmarks = faces.landmarks.stack_landmarks(tracked) * (
                256.0 / np.array([w, h], np.float32)
            )
        except faces.NoFaceError:
            landmarks = None  # only eye/lip retargeting needs them; it is skipped without
    eye, lip = _ratios(landmarks)
    return DrivingInput(
        name,
        'video' if is_video else 'image',
        len(frames),
        fps,
        crops_256=crops_256,
        eye_ratio=eye,
        lip_ratio=lip,
        has_audio=has_audio,
    )
