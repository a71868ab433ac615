"""Face landmarks (MediaPipe FaceMesh), reference-style cropping, eye/lip ratios, cat faces.

Only this package imports mediapipe and cv2, and only inside functions, so importing it is cheap
and the model code stays free of both. See CROP_NOTES.md for how the geometry was checked.
"""

from .animals import NoAnimalFaceError, crop_animal, detect_cat_face, detect_cat_faces
from .crop import (
    CropResult,
    DrivingCrops,
    crop_by_box,
    crop_driving_frames,
    crop_source_frames,
    crop_source_image,
    make_paste_back_mask,
    paste_back,
)
from .landmarks import Face, FaceLandmarker, NoFaceError, detect_face, detect_faces, track_faces
from .ratios import eye_close_ratio, lip_close_ratio

__all__ = [
    'Face',
    'FaceLandmarker',
    'NoFaceError',
    'detect_face',
    'detect_faces',
    'track_faces',
    'CropResult',
    'DrivingCrops',
    'crop_by_box',
    'crop_driving_frames',
    'crop_source_frames',
    'crop_source_image',
    'make_paste_back_mask',
    'paste_back',
    'eye_close_ratio',
    'lip_close_ratio',
    'NoAnimalFaceError',
    'crop_animal',
    'detect_cat_face',
    'detect_cat_faces',
]
