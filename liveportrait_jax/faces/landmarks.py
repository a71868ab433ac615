"""MediaPipe FaceMesh wrapper: 478 face landmarks per face, in pixel coordinates.

The reference LivePortrait detects faces with insightface and refines them with its own 203-point
landmark model. We use MediaPipe FaceMesh instead (``refine_landmarks=True``: 468 mesh points plus
10 iris points = 478), because its models ship inside the mediapipe 0.10.21 wheel and so work
offline. ``crop.py`` and ``ratios.py`` pick the MediaPipe indices that reproduce the reference's
crop geometry and eye/lip ratios.

Layouts
-------
* input images: RGB, uint8, ``(H, W, 3)``.
* ``Face.landmarks``: ``(478, 2)`` float32, ``(x, y)`` in pixels of the input image
  (x to the right, y down; MediaPipe's normalised coordinates times width / height).
* ``Face.bbox``: ``(4,)`` float32 ``(x0, y0, x1, y1)``, the tight box around the landmarks.

mediapipe is imported lazily, inside the functions that need it, so importing this module (and
``liveportrait_jax.faces``) stays cheap and the model code never pulls it in.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import os
import sys
import threading
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from liveportrait_jax import stopping

NUM_LANDMARKS = 478


class NoFaceError(ValueError):
    """No face was found. The message names the file (and frame) so a user knows which input failed."""

    def __init__(
        self, source_name: Optional[str] = None, frame_index: Optional[int] = None, detail: str = ''
    ):
        self.source_name = source_name
        self.frame_index = frame_index
        where = repr(str(source_name)) if source_name is not None else 'the input image'
        if frame_index is not None:
            where += f', frame {frame_index}'
        super().__init__(f'{where}: {detail}' if detail else f'no face found in {where}')


@dataclass(frozen=True)
class Face:
    """One detected face.

    landmarks: (478, 2) float32 pixel (x, y).
    bbox: (4,) float32 (x0, y0, x1, y1) around the landmarks.
    landmarks_z: (478,) float32 MediaPipe relative depth, in the same pixel scale as x (its scale
      follows the image width); kept for callers that want it, not used by the crop.
    """

    landmarks: np.ndarray
    bbox: np.ndarray
    landmarks_z: Optional[np.ndarray] = None

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray) -> 'Face':
        """A Face of (478, 2) pixel landmarks alone (its bbox around them; no depth)."""
        landmarks = np.asarray(landmarks, np.float32)
        return cls(landmarks=landmarks, bbox=_bbox_of(landmarks))

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.bbox
        return float(max(x1 - x0, 0.0) * max(y1 - y0, 0.0))


def _check_image(image_rgb: np.ndarray, source_name: Optional[str], frame_index: Optional[int]):
    where = repr(str(source_name)) if source_name is not None else 'input image'
    if frame_index is not None:
        where += f', frame {frame_index}'
    arr = np.asarray(image_rgb)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f'{where}: expected an RGB image of shape (H, W, 3), got {arr.shape}')
    if arr.dtype != np.uint8:
        raise ValueError(f'{where}: expected uint8 RGB, got dtype {arr.dtype}')
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise ValueError(f'{where}: image too small ({arr.shape[1]}x{arr.shape[0]})')
    # MediaPipe needs a C-contiguous buffer.
    return np.ascontiguousarray(arr)


def _bbox_of(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points.min(axis=0), points.max(axis=0)]).astype(np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / ua) if ua > 0 else 0.0


@contextlib.contextmanager
def _native_stderr_muted():
    """Sends file descriptor 2 to /dev/null for the duration.

    MediaPipe's native graph (TFLite, absl C++ logging) prints "INFO: Created TensorFlow Lite
    XNNPACK delegate" and "W0000 ... Feedback manager ..." lines on stderr when a graph starts and
    on its first inference. Users read them as errors, and no environment variable or Python API
    reaches that logger, so the two moments that print are run with the descriptor muted.
    Landmark workers run in several threads: the first to enter mutes, the last to leave restores
    (a per-thread save/restore could leave the descriptor muted for good).
    """
    global _muted_depth, _saved_fd
    with _mute_lock:
        if _muted_depth == 0:
            try:
                _saved_fd = os.dup(2)
                null = os.open(os.devnull, os.O_WRONLY)
            except OSError:  # no usable descriptor 2 (embedded interpreters): nothing to mute
                _saved_fd = None
            else:
                sys.stderr.flush()
                os.dup2(null, 2)
                os.close(null)
        _muted_depth += 1
    try:
        yield
    finally:
        with _mute_lock:
            _muted_depth -= 1
            if _muted_depth == 0 and _saved_fd is not None:
                sys.stderr.flush()
                os.dup2(_saved_fd, 2)
                os.close(_saved_fd)
                _saved_fd = None


_mute_lock = threading.Lock()
_muted_depth = 0
_saved_fd = None


class FaceLandmarker:
    """Thin stateful wrapper over ``mp.solutions.face_mesh.FaceMesh``.

    static_image_mode=True runs the face detector on every call (use for independent images);
    False tracks faces from the previous call's landmarks (use for consecutive video frames: faster
    and temporally steadier). One instance per image stream; use as a context manager or call
    ``close()`` to free the MediaPipe graph.
    """

    QUIET_CALLS = 2  # inferences run with stderr muted after a (re)start (see _run)

    def __init__(
        self,
        static_image_mode: bool = True,
        max_num_faces: int = 4,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ):
        import mediapipe as mp  # lazy: keeps `import liveportrait_jax.faces` cheap

        self.static_image_mode = static_image_mode
        with _native_stderr_muted():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=static_image_mode,
                max_num_faces=max_num_faces,
                refine_landmarks=True,
                min_detection_confidence=min_detection_confidence,
                min_tracking_confidence=min_tracking_confidence,
            )
        # A graph logs on its first inferences too (the first tracked frame of a non-square image
        # warns about NORM_RECT): the first QUIET_CALLS after a (re)start run muted.
        self._quiet = self.QUIET_CALLS

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def restart(self) -> None:
        """Forgets the tracked faces: the next frame is searched from scratch (tracking mode)."""
        if self._quiet < self.QUIET_CALLS:
            with _native_stderr_muted():
                self._mesh.reset()
            self._quiet = self.QUIET_CALLS  # the restarted graph logs again

    def __enter__(self) -> 'FaceLandmarker':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self, img: np.ndarray, offset=(0.0, 0.0), full_hw=None) -> List[Tuple[Face, float]]:
        """Faces in ``img`` as (Face in full-image pixels, margin to the window edge in px)."""
        h, w = img.shape[:2]
        if self._quiet <= 0:
            result = self._mesh.process(img)
        else:
            with _native_stderr_muted():
                result = self._mesh.process(img)
            self._quiet -= 1
        out = []
        for lms in result.multi_face_landmarks or []:
            xyz = np.array([(p.x, p.y, p.z) for p in lms.landmark], dtype=np.float64)
            pts = np.stack([xyz[:, 0] * w, xyz[:, 1] * h], axis=1)
            box = _bbox_of(pts)
            margin = float(min(box[0], box[1], w - box[2], h - box[3]))
            pts = (pts + np.asarray(offset)).astype(np.float32)
            out.append(
                (
                    Face(
                        landmarks=pts,
                        bbox=_bbox_of(pts),
                        landmarks_z=(xyz[:, 2] * w).astype(np.float32),
                    ),
                    margin,
                )
            )
        return out

    def _tiles(self, img: np.ndarray) -> List[Tuple[Face, float]]:
        # MediaPipe's face detector (BlazeFace short range, 128x128 input over the whole image)
        # misses faces smaller than about 12% of the image's long side. Windows of half the long
        # side, overlapping by half, double the apparent face size; every face up to a quarter of
        # the long side lies whole in at least one window.
        H, W = img.shape[:2]
        side = max(H, W) // 2
        if side < 64:
            return []
        step = side // 2
        ys = sorted({min(y, max(H - side, 0)) for y in range(0, max(H - side, 0) + step, step)})
        xs = sorted({min(x, max(W - side, 0)) for x in range(0, max(W - side, 0) + step, step)})
        found = []
        for y in ys:
            for x in xs:
                tile = np.ascontiguousarray(img[y : y + side, x : x + side])
                found.extend(self._run(tile, offset=(x, y)))
        return found

    def detect_near(
        self, image_rgb: np.ndarray, bbox: np.ndarray, scale: float = 3.0
    ) -> List[Face]:
        """Faces in a square window of ``scale`` times ``bbox``'s size around it (static mode),
        in full-image pixels, largest first: one FaceMesh pass where a face was a frame ago,
        instead of the zoomed-window search over the whole image."""
        H, W = image_rgb.shape[:2]
        x0, y0, x1, y1 = [float(v) for v in bbox]
        side = scale * max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        left, top = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        right, bottom = int(min(W, cx + side / 2)), int(min(H, cy + side / 2))
        if right - left < 32 or bottom - top < 32:
            return []
        window = np.ascontiguousarray(image_rgb[top:bottom, left:right])
        faces = [f for f, _ in self._run(window, offset=(left, top))]
        return sorted(faces, key=lambda f: f.area, reverse=True)

    def detect(
        self,
        image_rgb: np.ndarray,
        *,
        source_name: Optional[str] = None,
        frame_index: Optional[int] = None,
        min_faces: int = 1,
        search_small: Optional[bool] = None,
    ) -> List[Face]:
        """All faces in ``image_rgb`` (H, W, 3 uint8 RGB), largest bbox first; [] if none.

        search_small: also search zoomed-in windows for small faces (see _tiles). None -> only
        in static mode and only when the whole-image pass finds fewer than ``min_faces`` faces.
        Never used in tracking mode, whose state must follow one image stream.
        """
        if self._mesh is None:
            raise RuntimeError('FaceLandmarker is closed')
        img = _check_image(image_rgb, source_name, frame_index)
        found = [(f, np.inf) for f, _ in self._run(img)]  # whole-image faces are preferred
        if search_small is None:
            search_small = self.static_image_mode and len(found) < min_faces
        if search_small and self.static_image_mode:
            found.extend(self._tiles(img))
        # Merge duplicates (a face seen whole and in windows): keep the one farthest from its
        # window's edge, i.e. the least likely to be cut off.
        found.sort(key=lambda fm: fm[1], reverse=True)
        faces: List[Face] = []
        for f, _ in found:
            if all(_iou(f.bbox, g.bbox) < 0.3 for g in faces):
                faces.append(f)
        # Same rule as the reference's default direction "large-small".
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces

    def get(
        self,
        image_rgb: np.ndarray,
        face_index: int = 0,
        *,
        source_name: Optional[str] = None,
        frame_index: Optional[int] = None,
    ) -> Face:
        """The ``face_index``-th largest face; raises NoFaceError when there are too few faces."""
        faces = self.detect(
            image_rgb, source_name=source_name, frame_index=frame_index, min_faces=face_index + 1
        )
        if not faces:
            raise NoFaceError(source_name, frame_index)
        if not 0 <= face_index < len(faces):
            raise NoFaceError(
                source_name,
                frame_index,
                f'face_index={face_index} requested but only {len(faces)} face(s) found',
            )
        return faces[face_index]


def detect_faces(
    image_rgb: np.ndarray,
    max_num_faces: int = 4,
    *,
    search_small: bool = True,
    source_name: Optional[str] = None,
) -> List[Face]:
    """All faces in one image (static mode), largest first; [] if none.

    search_small: also look in zoomed windows, so faces down to ~6% of the image's long side are
    listed (MediaPipe alone needs ~12%); costs about ten FaceMesh runs instead of one.
    """
    with FaceLandmarker(static_image_mode=True, max_num_faces=max_num_faces) as fl:
        return fl.detect(image_rgb, source_name=source_name, search_small=search_small)


def detect_face(
    image_rgb: np.ndarray,
    face_index: int = 0,
    *,
    max_num_faces: int = 4,
    source_name: Optional[str] = None,
) -> Face:
    """One face of one image (static mode); raises NoFaceError naming ``source_name``."""
    max_num_faces = max(max_num_faces, face_index + 1)
    with FaceLandmarker(static_image_mode=True, max_num_faces=max_num_faces) as fl:
        return fl.get(image_rgb, face_index, source_name=source_name)


# Frames a tracker follows before it starts afresh (see track_faces_stream). A restart costs about
# as much as a frame (the graph is rebuilt and the face detected again), and with several workers
# (workers + 1) blocks of frames are in flight: 32 keeps both small.
TRACK_BLOCK = 32


def default_workers() -> int:
    """Landmark workers for this machine: one per core but one (the decoder and the device
    dispatch need a core), at most 4 (each holds a block of frames in memory, and MediaPipe runs
    its own inference threads too)."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


class _Follower:
    """Which of a frame's faces is "the" face: the rule of track_faces, applied in frame order."""

    def __init__(self, face_index, source_name, on_missing):
        if on_missing not in ('raise', 'hold'):
            raise ValueError(f"on_missing must be 'raise' or 'hold', got {on_missing!r}")
        self.face_index, self.name, self.on_missing = face_index, source_name, on_missing
        self.prev: Optional[Face] = None
        self.missing = 0  # frames without the face (held, or leading)

    def __call__(self, i: int, faces: List[Face]) -> Optional[Face]:
        face = None
        if self.prev is None:
            if len(faces) > self.face_index:
                face = faces[self.face_index]
            elif faces and self.on_missing == 'raise':
                raise NoFaceError(
                    self.name,
                    i,
                    f'face_index={self.face_index} requested but only {len(faces)} face(s) found',
                )
        elif len(faces) == 1:
            face = faces[0]  # one face: it is the one we follow (even across a cut)
        elif faces:
            face = max(faces, key=lambda f: _iou(f.bbox, self.prev.bbox))
        if face is None:
            if self.on_missing == 'raise':
                raise NoFaceError(self.name, i)
            self.missing += 1
            return self.prev
        self.prev = face
        return face


class _BlockDetector:
    """Per-thread landmarkers: a tracker that restarts at each block, and a static fallback."""

    def __init__(self, max_num_faces, source_name, static=False):
        self.max_num_faces, self.name, self.static = max_num_faces, source_name, static
        self.local = threading.local()
        self.lock = threading.Lock()
        self.opened: List[FaceLandmarker] = []

    def _get(self, static: bool) -> FaceLandmarker:
        key = 'static' if static else 'track'
        fl = getattr(self.local, key, None)
        if fl is None:
            fl = FaceLandmarker(static_image_mode=static, max_num_faces=self.max_num_faces)
            setattr(self.local, key, fl)
            with self.lock:
                self.opened.append(fl)
        return fl

    def one(self, index: int, frame: np.ndarray, restart: bool) -> List[Face]:
        """The faces of one frame; `restart` forgets what the tracker followed so far."""
        stopping.check()  # per frame, in whichever worker: a stop ends the face search
        fl = self._get(static=self.static)
        if restart and not self.static:
            fl.restart()
            self.local.last = None
        faces = fl.detect(frame, source_name=self.name, frame_index=index)
        if not faces:
            # Tracking mode's detector sees the whole frame at 128 x 128 and misses faces under
            # ~12% of it; static detection finds them, first in a window around the face of the
            # frame before (one pass), else with the zoomed-window search over the whole frame.
            static = self._get(static=True)
            last = getattr(self.local, 'last', None)
            if last is not None:
                faces = static.detect_near(frame, last.bbox)
            if not faces:
                faces = static.detect(
                    frame, source_name=self.name, frame_index=index, search_small=True
                )
        if faces:
            last = getattr(self.local, 'last', None)
            self.local.last = (
                faces[0] if last is None else max(faces, key=lambda f: _iou(f.bbox, last.bbox))
            )
        return faces

    def __call__(self, start: int, frames: Sequence[np.ndarray]) -> List[List[Face]]:
        return [self.one(start + j, f, restart=j == 0) for j, f in enumerate(frames)]

    def close(self):
        for fl in self.opened:
            fl.close()


def _blocks(frames: Iterable[np.ndarray], size: int):
    block, start = [], 0
    for frame in frames:
        block.append(frame)
        if len(block) == size:
            yield start, block
            start, block = start + size, []
    if block:
        yield start, block


def track_faces_stream(
    frames: Iterable[np.ndarray],
    face_index: int = 0,
    *,
    max_num_faces: int = 4,
    source_name: Optional[str] = None,
    on_missing: str = 'raise',
    workers: int = 1,
    block: int = TRACK_BLOCK,
) -> Iterator[Tuple[np.ndarray, Optional[Face]]]:
    """Yields (frame, Face) for every frame of a video, in order, in MediaPipe's tracking mode.

    frames: iterable of (H, W, 3) uint8 RGB frames (read lazily: at most (workers + 1) * block
      frames are held at a time with several workers, none with one).
    face_index: which face to follow, counted largest first on the first frame; on later frames
      the face whose bbox overlaps the previous one most is kept, so the choice does not jump to
      another person when sizes change.
    on_missing: "raise" -> NoFaceError naming ``source_name`` and the frame index; "hold" -> the
      previous frame's face, for videos with short drop-outs (motion blur, occlusion). Leading
      frames before the first face are yielded with None (the caller fills them in, see
      track_faces); no face in any frame raises NoFaceError.
    workers: threads running FaceMesh in parallel (MediaPipe releases the GIL), each with its own
      tracker. The frames are cut into blocks of ``block`` consecutive frames and every block is
      tracked from a fresh start (the tracker detects on the block's first frame), whichever
      worker takes it: the landmarks are the same for any number of workers.
    Frames where tracking finds no face are searched again in static mode with zoomed windows,
    which finds faces down to ~6% of the frame's long side.
    """
    follow = _Follower(face_index, source_name, on_missing)
    detect = _BlockDetector(max(max_num_faces, face_index + 1), source_name)
    for i, frame, found in _detected(frames, detect, workers, block, source_name):
        yield frame, follow(i, found)
    if follow.prev is None:
        raise NoFaceError(source_name, None, 'no face in any frame')


def _detected(frames, detect, workers, block, source_name):
    """Yields (index, frame, faces) of every frame, in order, found by `detect` (a _BlockDetector)
    in blocks on `workers` threads; closes the detector. No frames is a ValueError."""
    n = 0
    try:
        if workers <= 1:  # frame by frame, nothing held; the same restarts as with workers
            for i, frame in enumerate(frames):
                yield i, frame, detect.one(i, frame, restart=i % block == 0)
                n += 1
        else:
            with concurrent.futures.ThreadPoolExecutor(workers, 'landmarks') as pool:
                pending = collections.deque()

                def done(start, blk, fut):
                    for j, (frame, found) in enumerate(zip(blk, fut.result())):
                        yield start + j, frame, found

                try:
                    for start, blk in _blocks(frames, block):
                        pending.append((start, blk, pool.submit(detect, start, blk)))
                        while len(pending) > workers:
                            blk0 = pending[0][1]
                            yield from done(*pending.popleft())
                            n += len(blk0)
                    while pending:
                        blk0 = pending[0][1]
                        yield from done(*pending.popleft())
                        n += len(blk0)
                finally:
                    for *_, fut in pending:
                        fut.cancel()
    finally:
        detect.close()
    if n == 0:
        raise ValueError(f'{source_name or "video"}: no frames')


# A face first seen after the first frame counts (face_tracks) once it is seen in this many frames:
# a face detector's one-frame false find is not a face to animate.
MIN_TRACK_FRAMES = 3


@dataclass(frozen=True)
class FaceTrack:
    """A face of a video, found by face_tracks: its number (faces numbered as they are first
    seen, stray finds included), where it is first seen (frame and Face there), and in how many
    frames it is seen at all."""

    number: int
    first_frame: int
    face: Face
    frames_seen: int


def face_tracks(
    frames: Iterable[np.ndarray],
    *,
    max_num_faces: int = 8,
    min_iou: float = 0.3,
    source_name: Optional[str] = None,
    workers: int = 1,
    block: int = TRACK_BLOCK,
    keep: Optional[Callable[[int, Dict[int, Face]], None]] = None,
) -> List[FaceTrack]:
    """Every face of a video, including faces that come in later: one pass in static mode (each
    frame's faces found afresh, which keeps one of several faces that MediaPipe's tracker may drop
    for a frame while it follows the others), the faces of each frame matched to the faces seen so
    far by overlap (IoU >= min_iou with where each was last seen, best pairs first). A face that
    overlaps none is a new face; a face absent from a frame is missing there (not held).

    keep(i, {number: Face}): called for each frame with the faces seen in it, by FaceTrack.number
    (the caller keeps what it needs of them: this function holds only a box and one Face a face).
    Returns the faces of the first frame, largest first (the order of face indices in an image),
    then the faces that come in later, in the order they come in, each seen in at least
    MIN_TRACK_FRAMES frames. No frames is a ValueError.
    """
    detect = _BlockDetector(max_num_faces, source_name, static=True)
    tracks: List[list] = []  # [first_frame, first Face, last bbox, frames seen]
    for i, _, found in _detected(frames, detect, workers, block, source_name):
        pairs = sorted(
            ((_iou(f.bbox, t[2]), k, j) for k, t in enumerate(tracks) for j, f in enumerate(found)),
            reverse=True,
        )
        seen: Dict[int, int] = {}  # track number -> index of its face in this frame
        for iou, k, j in pairs:
            if iou < min_iou:
                break
            if k not in seen and j not in seen.values():
                seen[k] = j
        for k, j in seen.items():
            tracks[k][2], tracks[k][3] = found[j].bbox, tracks[k][3] + 1
        taken = set(seen.values())
        for j, f in enumerate(found):  # largest first: the first frame's order is the index order
            if j not in taken:
                seen[len(tracks)] = j
                tracks.append([i, f, f.bbox, 1])
        if keep is not None:
            keep(i, {k: found[j] for k, j in seen.items()})
    return [
        FaceTrack(k, first, face, n_seen)
        for k, (first, face, _, n_seen) in enumerate(tracks)
        if first == 0 or n_seen >= MIN_TRACK_FRAMES
    ]


def track_faces(
    frames: Iterable[np.ndarray],
    face_index: int = 0,
    *,
    max_num_faces: int = 4,
    source_name: Optional[str] = None,
    on_missing: str = 'raise',
    workers: int = 1,
) -> List[Face]:
    """One face per video frame: track_faces_stream collected in a list (leading frames without
    a face take the first face found)."""
    out = [
        face
        for _, face in track_faces_stream(
            frames,
            face_index,
            max_num_faces=max_num_faces,
            source_name=source_name,
            on_missing=on_missing,
            workers=workers,
        )
    ]
    first = next(f for f in out if f is not None)
    return [f if f is not None else first for f in out]


def stack_landmarks(faces: Sequence[Face]) -> np.ndarray:
    """(T, 478, 2) float32 from a list of Faces (e.g. the output of track_faces)."""
    return np.stack([f.landmarks for f in faces]).astype(np.float32)
