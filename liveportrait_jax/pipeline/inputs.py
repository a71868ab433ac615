"""Stage "faces": landmarks and crops of the source and driving frames, streamed frame by frame.

Every function here takes a `read.Media` and yields per-frame records; nothing holds a whole video.
What the later passes need again is kept as small per-frame arrays (crop matrices, eye/lip
ratios), and the frames themselves are decoded again (`Media.frames`) and re-cropped with the same
matrices, which gives the same crops.

The reference's rules kept here:
- source: longest side <= source_max_dim, sides divisible by source_division; cropped around the
  face (rotated) and resized to 256 with INTER_AREA; without cropping, resized with cv2's default
  (linear) interpolation;
- driving video: cropped (one box for the whole video, the mean of the per-frame boxes) when it is
  not square or when asked, the crop resized to 256 linearly; a square video is resized to 256
  linearly, uncropped.
- eye / lip ratios from the landmarks, in crop pixels (ratios of distances: a driving box, which
  only scales and shifts, does not change them).
"""

import collections
import dataclasses
import logging
import tempfile
from typing import Optional

import cv2
import numpy as np

from liveportrait_jax import faces
from liveportrait_jax.faces.crop import NETWORK_SIZE
from liveportrait_jax.io import InputError
from liveportrait_jax.pipeline.options import parse_faces

log = logging.getLogger('liveportrait_jax')

MAX_FACES = 8  # faces looked for when animating 'all' the faces of a source


def _limited(w, h, max_dim, division):
    """resize_to_limit's sizes: ((w, h) resized, (w, h) then cut to multiples of `division`)."""
    if max_dim > 0 and max(h, w) > max_dim:
        if h > w:
            h, w = max_dim, int(w * (max_dim / h))
        else:
            w, h = max_dim, int(h * (max_dim / w))
    division = max(1, int(division))
    return (w, h), (w - w % division, h - h % division)


def resize_to_limit(img, max_dim=1280, division=2):
    """The reference's source resizing: longest side <= max_dim, sides divisible by `division`."""
    h, w = img.shape[:2]
    (new_w, new_h), (nw, nh) = _limited(w, h, max_dim, division)
    if (new_w, new_h) != (w, h):
        img = cv2.resize(img, (new_w, new_h))
        h, w = new_h, new_w
    if (nh, nw) != (h, w):
        img = np.ascontiguousarray(img[:nh, :nw])
    if nh == 0 or nw == 0:
        raise InputError(f'image of size {w}x{h} is too small')
    return img


def check_source_size(media, options):
    """The source's frames as resize_to_limit will make them, checked before any work: an
    InputError naming the file when nothing would be left, one log line when they are resized."""
    if media.size is None:
        return
    w, h = media.size
    resized, (nw, nh) = _limited(w, h, options.source_max_dim, options.source_division)
    if nw == 0 or nh == 0:
        raise InputError(
            f'{media.name!r}: image of size {w}x{h} is too small (sides of at least '
            f'{options.source_division} pixels, --source-division)'
        )
    if resized != (w, h):
        log.info('%s: source %dx%d resized to %dx%d (--source-max-dim %d)',
                 media.name, w, h, nw, nh, options.source_max_dim)  # fmt: skip


def resize_256(frame):
    """An uncropped frame to the networks' 256 x 256: cv2's default (linear), as the reference."""
    return cv2.resize(frame, (NETWORK_SIZE, NETWORK_SIZE))


def ratios(landmarks):
    """(eye (n, 2), lip (n, 1)) float32 open ratios of (n, 478, 2) landmarks; None for None."""
    if landmarks is None:
        return None, None
    return (
        faces.eye_close_ratio(landmarks).astype(np.float32),
        faces.lip_close_ratio(landmarks).astype(np.float32),
    )


# --- source ----------------------------------------------------------------------------------


@dataclasses.dataclass
class SourceFrame:
    """One source frame: the frame (after resize_to_limit), its 256 crop, and where it came from."""

    index: int
    frame: np.ndarray  # (H, W, 3) uint8
    crop_256: np.ndarray  # (256, 256, 3) uint8
    M_o2c: Optional[np.ndarray]  # (3, 3) frame -> crop (dsize), None without cropping
    M_c2o: Optional[np.ndarray]  # its inverse (crop -> frame, for paste-back)
    landmarks: Optional[np.ndarray]  # (478, 2) in crop pixels (dsize or 256), None if unknown
    present: bool = True  # False: the face was not found in this frame (its crop is held)


class TrackRows:
    """One face's landmarks in each frame of a source video, as face_tracks found them: (478, 2)
    float32 rows, NaN where the face is not in the frame, in an unnamed temporary file (3.8 kB a
    frame on disk, nothing in memory), so each face's source pass reads them instead of finding the
    faces again."""

    ROW = (faces.landmarks.NUM_LANDMARKS, 2)

    def __init__(self):
        self.file = tempfile.TemporaryFile(prefix='liveportrait-track-')
        self.n = 0

    def put(self, i, landmarks):
        """Row i (rows before it that were not put are the face's absence)."""
        self.pad(i)
        self.file.write(np.ascontiguousarray(landmarks, np.float32).tobytes())
        self.n = i + 1

    def pad(self, n):
        """Absent rows up to n rows."""
        if n > self.n:
            self.file.write(np.full((n - self.n,) + self.ROW, np.nan, np.float32).tobytes())
            self.n = n

    def rows(self):
        """Yields each frame's Face, or None where the face is not in the frame."""
        size = int(np.prod(self.ROW)) * 4
        self.file.flush()
        self.file.seek(0)
        for _ in range(self.n):
            lm = np.frombuffer(self.file.read(size), np.float32).reshape(self.ROW)
            yield None if np.isnan(lm[0, 0]) else faces.landmarks.Face.from_landmarks(lm)


@dataclasses.dataclass(frozen=True)
class SourceFace:
    """A face of the source to animate: its index (largest first in the first frame; in a video
    with several faces, then the faces that come in later, in order), and for a face of a video
    chosen with `faces`, its track (faces.landmarks.FaceTrack: where it is first seen) and its
    landmarks in every frame (TrackRows)."""

    index: int
    track: Optional[faces.landmarks.FaceTrack] = None
    rows: Optional[TrackRows] = None


def _source_face_frames(media, options, frames, workers, face=None):
    """(frame, Face, present) of the source's frames: an image is searched in static mode (with
    the small-face search), a video tracked (no face in a frame is an error naming the file and
    frame). A face of a video found by source_faces (face.rows) takes its landmarks from there:
    in frames without it (before it comes in, or while it is out of the picture) it keeps the
    last Face it had (its first before it comes in), a stand-in crop that is not pasted (present
    False)."""
    if media.kind == 'image':
        frame = next(iter(frames))
        yield frame, faces.detect_face(frame, options.face_index, source_name=media.name), True
        return
    if face is not None and face.rows is not None:
        held, rows = face.track.face, face.rows.rows()
        for i, frame in enumerate(frames):
            found = next(rows, _END)
            if found is _END:
                raise ValueError(f'{media.name!r}: frame {i} was not searched for faces')
            if found is not None:
                held = found
            yield frame, held, found is not None
        return
    tracked = faces.landmarks.track_faces_stream(
        frames, options.face_index, source_name=media.name, workers=workers
    )
    for frame, found in tracked:
        yield frame, found, True


_END = object()


def iter_source(media, options, *, animals=False, limit=None, workers=None, face=None):
    """Yields a SourceFrame for each source frame (the first pass over the source).

    face: a SourceFace of source_faces (one of several faces of a video: its landmarks come from
    that search, and frames without it are marked not present)."""
    workers = faces.landmarks.default_workers() if workers is None else workers
    frames = (
        resize_to_limit(f, options.source_max_dim, options.source_division)
        for f in media.frames(limit)
    )
    name = media.name
    if not options.flag_do_crop:
        # Landmarks only for the eye/lip ratios; without a face the retargeting is skipped.
        face_frames = faces.landmarks.track_faces_stream(
            frames, options.face_index, source_name=name, on_missing='hold', workers=workers
        )
        try:
            for i, (f, face) in enumerate(face_frames):
                lm = None
                if face is not None:
                    lm = face.landmarks * (NETWORK_SIZE / np.array([f.shape[1], f.shape[0]]))
                yield SourceFrame(i, f, resize_256(f), None, None, lm)
        except faces.NoFaceError:
            return
        return
    if options.crop_box is not None or animals:
        for i, f in enumerate(frames):
            if options.crop_box is not None:
                res = faces.crop_by_box(f, options.crop_box, dsize=options.dsize)
            else:
                res = faces.crop_animal(f, dsize=options.dsize, source_name=name)
            yield SourceFrame(i, f, res.image_256, res.M_o2c, res.M_c2o, None)
        return
    face_frames = _source_face_frames(media, options, frames, workers, face)
    for i, (f, found, present) in enumerate(face_frames):
        res = faces.crop_source_image(
            f,
            found,
            dsize=options.dsize,
            scale=options.scale,
            vx_ratio=options.vx_ratio,
            vy_ratio=options.vy_ratio,
            flag_do_rot=options.flag_do_rot,
            source_name=name,
        )
        yield SourceFrame(i, f, res.image_256, res.M_o2c, res.M_c2o, res.landmarks, present)


def _counted(frames, progress):
    for f in frames:
        progress(1)
        yield f


def source_faces(media, options, *, animals=False, limit=None, workers=None, progress=None):
    """The SourceFaces to animate: options.faces ('all': every face; '0,2': those), or the one
    face of options.face_index when options.faces is empty.

    An image's faces are those found in it, largest first. A video's are found in one pass over
    its frames (up to `limit`; faces.landmarks.face_tracks): the first frame's, largest first, then
    the faces that come in later, in the order they come in, each with its track. progress(n):
    called per frame of that pass."""
    chosen = parse_faces(options.faces)
    if chosen is None:
        return (SourceFace(options.face_index),)
    if animals or options.crop_box is not None or not options.flag_do_crop:
        raise ValueError('faces: several faces need face detection and cropping (no crop_box, '
                         'no animals mode, flag_do_crop on)')  # fmt: skip
    frames = (
        resize_to_limit(f, options.source_max_dim, options.source_division)
        for f in media.frames(1 if media.kind == 'image' else limit)
    )
    if media.kind == 'image':
        found = [
            SourceFace(i)
            for i, _ in enumerate(
                faces.landmarks.detect_faces(next(frames), MAX_FACES, source_name=media.name)
            )
        ]
    else:
        found = _video_faces(media, frames, workers, progress)
    where = 0 if media.kind == 'image' else None  # the frame named in errors
    if not found:
        raise faces.NoFaceError(media.name, where)
    if chosen == 'all':
        return tuple(found)
    if any(i >= len(found) for i in chosen):
        raise faces.NoFaceError(
            media.name, where, f'faces {options.faces!r} requested but {len(found)} face(s) found'
        )
    return tuple(found[i] for i in chosen)


def _video_faces(media, frames, workers, progress):
    """The SourceFaces of every face of a video (source_faces), each with its TrackRows."""
    workers = faces.landmarks.default_workers() if workers is None else workers
    if progress is not None:
        frames = _counted(frames, progress)
    rows, searched = collections.defaultdict(TrackRows), [0]

    def keep(i, seen):
        searched[0] = i + 1
        for number, face in seen.items():
            rows[number].put(i, face.landmarks)

    tracks = faces.landmarks.face_tracks(
        frames, max_num_faces=MAX_FACES, source_name=media.name, workers=workers, keep=keep
    )
    found = []
    for i, t in enumerate(tracks):
        rows[t.number].pad(searched[0])  # absent in the last frames too
        found.append(SourceFace(i, t, rows.pop(t.number)))
    for r in rows.values():  # stray finds
        r.file.close()
    later = sum(t.first_frame > 0 for t in tracks)
    log.info('%s: %d face(s) in the first frame, %d coming in later',
             media.name, len(tracks) - later, later)  # fmt: skip
    return found


def crop_source(image, options, *, animals=False, name='<image>'):
    """The SourceFrame of one source image ((H, W, 3) uint8 RGB): the crop `animate` makes."""
    from liveportrait_jax.pipeline.read import media_from_frames

    media = media_from_frames([image], name=name, is_video=False)
    return next(iter_source(media, options, animals=animals, workers=1))


def iter_source_again(media, options, M_o2c, limit):
    """Yields (frame, crop_256) of the source's frames a second time, cropped with the first
    pass's matrices (M_o2c (S, 3, 3), or None without cropping): the same crops, no landmarks."""
    for i, f in enumerate(media.frames(limit)):
        f = resize_to_limit(f, options.source_max_dim, options.source_division)
        if M_o2c is None:
            yield f, resize_256(f)
        else:
            yield f, faces.crop.crop_with_matrix(f, M_o2c[i], options.dsize)


# --- driving ---------------------------------------------------------------------------------


@dataclasses.dataclass
class DrivingGeometry:
    """What the first pass over a driving video learns: its crop boxes and eye/lip ratios.

    M_o2c: (N, 3, 3) frame -> crop (dsize) matrices, or None (a square video is only resized).
    eye (N, 2), lip (N, 1): open ratios, or None (no face: retargeting is then skipped).
    missing: frames in which no face was found (their landmarks are held from a neighbour).
    """

    n_frames: int
    M_o2c: Optional[np.ndarray]
    eye: Optional[np.ndarray]
    lip: Optional[np.ndarray]
    missing: int = 0


def needs_driving_crop(options, width, height):
    return options.flag_crop_driving_video or width != height


def driving_landmarks(media, options, *, limit=None, workers=None, frames=None):
    """Tracked (frame, landmarks (478, 2) or None) of a driving video, in original pixels.

    Frames without a face keep the previous frame's landmarks (leading ones: None, filled in by
    the caller); no face in any frame is a NoFaceError naming the file (the reference's rule too).
    """
    workers = faces.landmarks.default_workers() if workers is None else workers
    frames = media.frames(limit) if frames is None else frames
    for f, face in faces.landmarks.track_faces_stream(
        frames, options.face_index, source_name=media.name, on_missing='hold', workers=workers
    ):
        yield f, None if face is None else face.landmarks


def _fill_leading(rows):
    """Rows with leading Nones take the first real row (held faces, see track_faces_stream)."""
    first = next(r for r in rows if r is not None)
    return np.stack([first if r is None else r for r in rows])


def driving_geometry(media, options, *, limit=None, workers=None):
    """First pass over a driving video that is cropped: per-frame boxes -> one smoothed box per
    frame (the reference's mean box), and the eye/lip ratios. Holds only (N, 4) boxes and ratios."""
    boxes, eyes, lips, n, missing = [], [], [], 0, 0
    for _, lm in driving_landmarks(media, options, limit=limit, workers=workers):
        n += 1
        if lm is None:
            boxes.append(None), eyes.append(None), lips.append(None)
            missing += 1
            continue
        boxes.append(
            faces.crop.crop_box_from_landmarks(
                lm,
                options.scale_crop_driving_video,
                options.vx_ratio_crop_driving_video,
                options.vy_ratio_crop_driving_video,
            )
        )
        e, li = ratios(lm[None])
        eyes.append(e[0]), lips.append(li[0])
    smoothed = faces.crop.smooth_boxes(_fill_leading(boxes), 'global')
    M = np.stack([faces.crop.box_o2c(b, options.dsize) for b in smoothed])
    return DrivingGeometry(n, M, _fill_leading(eyes), _fill_leading(lips), missing)


def iter_driving_crops(media, options, geometry, limit=None):
    """Yields the 256 crop of each driving frame (cropped with `geometry`, or resized)."""
    for i, f in enumerate(media.frames(limit)):
        if geometry is not None and geometry.M_o2c is not None:
            crop = faces.crop.warp_crop(f, geometry.M_o2c[i], options.dsize)
            yield cv2.resize(crop, (NETWORK_SIZE, NETWORK_SIZE))
        else:
            yield resize_256(f)


def report_missing_faces(name, missing, n):
    if missing:
        log.warning(
            '%r: no face found in %d of %d driving frames; those frames use the nearest '
            "earlier frame's landmarks",
            name,
            missing,
            n,
        )
