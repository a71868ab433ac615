"""load_image / save_image: RGB uint8 out, clear errors naming the file."""

import os

import cv2
import numpy as np
import pytest

from liveportrait_jax.io import InputError, OutputError, load_image, save_image


def _gradient(h=24, w=31):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 8 % 256, y * 10 % 256, (x + y) * 3 % 256], -1).astype(np.uint8)


def test_png_round_trip_is_exact_and_rgb_ordered(tmp_path):
    img = _gradient()
    path = tmp_path / 'g.png'
    save_image(path, img)
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == img.shape
    np.testing.assert_array_equal(out, img)
    # On disk it is a normal BGR-encoded PNG: OpenCV's own reader sees channels reversed.
    np.testing.assert_array_equal(cv2.imread(str(path))[..., ::-1], img)


def test_grayscale_and_rgba_become_rgb(tmp_path):
    gray = _gradient()[..., 0]
    cv2.imwrite(str(tmp_path / 'gray.png'), gray)
    out = load_image(tmp_path / 'gray.png')
    assert out.shape == gray.shape + (3,)
    np.testing.assert_array_equal(out[..., 1], gray)

    rgba = np.concatenate([_gradient(), np.full(_gradient().shape[:2] + (1,), 7, np.uint8)], -1)
    cv2.imwrite(str(tmp_path / 'rgba.png'), rgba[..., [2, 1, 0, 3]])
    out = load_image(tmp_path / 'rgba.png')
    np.testing.assert_array_equal(out, rgba[..., :3])  # alpha dropped, like the reference


def test_missing_file(tmp_path):
    path = tmp_path / 'nope.jpg'
    with pytest.raises(InputError, match='nope.jpg.*not found'):
        load_image(path)


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / 'fake.jpg'
    path.write_text('this is not an image\n')
    with pytest.raises(InputError, match='fake.jpg.*not a readable image'):
        load_image(path)


def test_empty_file_and_directory(tmp_path):
    (tmp_path / 'empty.png').write_bytes(b'')
    with pytest.raises(InputError, match='empty'):
        load_image(tmp_path / 'empty.png')
    with pytest.raises(InputError, match='directory'):
        load_image(tmp_path)


def test_save_rejects_bad_arrays_and_writes_nothing(tmp_path):
    with pytest.raises(OutputError, match='uint8'):
        save_image(tmp_path / 'f.png', _gradient().astype(np.float32) / 255)
    with pytest.raises(OutputError, match='shape'):
        save_image(tmp_path / 'f.png', np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(OutputError, match='extension'):
        save_image(tmp_path / 'noext', _gradient())
    assert os.listdir(tmp_path) == []


def test_input_error_is_a_value_error():
    assert issubclass(InputError, ValueError)
