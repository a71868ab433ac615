"""Cat faces with OpenCV's bundled cascade, on skimage's chelsea."""

import numpy as np
import pytest

from liveportrait_jax.faces import animals as A


@pytest.fixture(scope='module')
def chelsea():
    from skimage import data

    return data.chelsea()


@pytest.fixture(scope='module')
def chelsea_boxes(chelsea):
    return A.detect_cat_faces(chelsea, source_name='chelsea.png')


def test_cat_found_on_chelsea(chelsea_boxes):
    boxes = chelsea_boxes
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) >= 1
    sides = boxes[:, 2] - boxes[:, 0]
    assert np.all(np.diff(sides) <= 0)  # largest first
    x0, y0, x1, y1 = boxes[0]
    # Chelsea's face fills most of the 451x300 photo: eyes near (170, 115) and (320, 135),
    # nose near (260, 240). The box must hold the eyes and the nose and be face-sized.
    for px, py in [(170, 115), (320, 135), (260, 240)]:
        assert x0 < px < x1 and y0 < py < y1
    assert 200 < x1 - x0 < 450


def test_crop_animal(chelsea, chelsea_boxes):
    from liveportrait_jax.faces.crop import expand_box

    r = A.crop_animal(chelsea, expand_box(chelsea_boxes[0], 1.6, vy_ratio=-0.05), dsize=256)
    assert r.image.shape == (256, 256, 3) and r.image_256.shape == (256, 256, 3)
    assert np.allclose(r.M_c2o @ r.M_o2c, np.eye(3))


def test_no_cat_is_a_clear_error():
    blank = np.full((200, 300, 3), 90, np.uint8)
    assert len(A.detect_cat_faces(blank)) == 0
    with pytest.raises(A.NoAnimalFaceError, match='empty_room.jpg'):
        A.detect_cat_face(blank, source_name='empty_room.jpg')
    with pytest.raises(ValueError, match='uint8'):
        A.detect_cat_faces(np.zeros((10, 10, 3), np.float64))
