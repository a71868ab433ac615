"""FaceMesh wrapper: detection on skimage's astronaut, clear errors on faceless input."""

import subprocess
import sys

import numpy as np
import pytest

from liveportrait_jax.faces.landmarks import (
    NUM_LANDMARKS,
    FaceLandmarker,
    NoFaceError,
    detect_face,
    detect_faces,
    track_faces,
)


@pytest.fixture(scope='module')
def astronaut():
    from skimage import data

    return data.astronaut()


def test_import_is_cheap():
    # The model code must never pull in mediapipe / cv2 through the faces package.
    code = (
        'import sys, liveportrait_jax.faces, liveportrait_jax.faces.crop, '
        'liveportrait_jax.faces.ratios, liveportrait_jax.faces.landmarks, '
        'liveportrait_jax.faces.animals; '
        "bad = [m for m in ('mediapipe', 'cv2') if m in sys.modules]; "
        'assert not bad, bad'
    )
    subprocess.run([sys.executable, '-c', code], check=True)


def test_astronaut_landmarks(astronaut):
    face = detect_face(astronaut, source_name='astronaut.png')
    lm = face.landmarks
    assert lm.shape == (NUM_LANDMARKS, 2) and lm.dtype == np.float32
    x0, y0, x1, y1 = face.bbox
    assert np.all(lm >= np.array([x0, y0]) - 1e-3) and np.all(lm <= np.array([x1, y1]) + 1e-3)
    # The face sits in the upper middle of the 512x512 image, about 100 px wide.
    assert 150 < x0 < x1 < 300 and 40 < y0 < y1 < 220
    assert 70 < x1 - x0 < 140
    # Image-left eye (33) is left of the image-right eye (263); chin (152) below the nose (1).
    assert lm[33, 0] < lm[263, 0] and lm[152, 1] > lm[1, 1]


def test_several_faces_sorted_largest_first(astronaut):
    # The second face is ~75 px wide in a 1024 px image: too small for MediaPipe's whole-image
    # detector, found through the zoomed windows.
    import cv2

    small = cv2.resize(astronaut, (384, 384), interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 1024, 3), 127, np.uint8)
    canvas[:, :512] = astronaut
    canvas[64:448, 576:960] = small
    faces = detect_faces(canvas)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area
    assert faces[0].bbox[0] < 512 <= faces[1].bbox[0]
    second = detect_face(canvas, face_index=1)
    assert np.allclose(second.bbox, faces[1].bbox, atol=2)
    with pytest.raises(NoFaceError, match='face_index=5'):
        detect_face(canvas, face_index=5, source_name='two.png')


def test_blank_image_raises_naming_file():
    blank = np.zeros((256, 256, 3), np.uint8)
    with pytest.raises(NoFaceError, match='blank_source.png') as info:
        detect_face(blank, source_name='blank_source.png')
    assert isinstance(info.value, ValueError)
    assert detect_faces(blank) == []


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match='uint8'):
        detect_face(np.zeros((64, 64, 3), np.float32), source_name='x.png')
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        detect_face(np.zeros((64, 64), np.uint8), source_name='x.png')


def test_tracking_names_frame_and_hold(astronaut):
    blank = np.zeros_like(astronaut)
    frames = [astronaut, np.roll(astronaut, 3, axis=1), blank, astronaut]
    with pytest.raises(NoFaceError, match=r"'clip.mp4', frame 2"):
        track_faces(frames, source_name='clip.mp4')
    faces = track_faces(frames, source_name='clip.mp4', on_missing='hold')
    assert len(faces) == 4
    assert np.allclose(faces[2].landmarks, faces[1].landmarks)
    # The 3 px shift shows up in the tracked landmarks.
    assert abs(float(np.median(faces[1].landmarks[:, 0] - faces[0].landmarks[:, 0])) - 3) < 1.5


def test_landmarker_context_manager(astronaut):
    with FaceLandmarker(static_image_mode=True, max_num_faces=1) as fl:
        assert len(fl.detect(astronaut)) == 1
    with pytest.raises(RuntimeError):
        fl.detect(astronaut)
