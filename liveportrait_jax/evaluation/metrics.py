"""Per-frame metrics of generated against reference frames, on numpy arrays.

Images are uint8 (N, H, W, 3). L1 is the mean absolute difference in [0, 1] units (pixel / 255);
PSNR and SSIM are scikit-image's (data range 255; SSIM over the colour channels, its default 7 x 7
window); PSNR of identical images is infinite and reported as PSNR_IDENTICAL dB. Landmarks are
MediaPipe's (N, 478, 2) in pixels; their distance is the mean point distance over the inter-ocular
distance of the reference (outer eye corners 33 and 263). Motion (from the motion extractor):
head-pose error is the mean absolute pitch/yaw/roll difference in degrees; expression distance
the mean over keypoints of the L2 norm of the difference of the (21, 3) expression deltas.
Openness: eye (N, 2) and lip (N, 1) open ratios (faces.ratios), their mean absolute difference.
"""

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

PSNR_IDENTICAL = 100.0  # dB reported for identical images (the true value is infinite)
EYE_CORNERS = (33, 263)


def _pairs(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f'shapes differ: {a.shape} vs {b.shape}')
    return a, b


def l1(a, b):
    """(N,) mean absolute difference of uint8 images, in [0, 1]."""
    a, b = _pairs(a, b)
    d = np.abs(a.astype(np.float64) - b.astype(np.float64)) / 255.0
    return d.reshape(len(d), -1).mean(axis=1)


def psnr(a, b):
    """(N,) PSNR in dB (PSNR_IDENTICAL for identical images)."""
    a, b = _pairs(a, b)
    out = []
    for x, y in zip(a, b):
        out.append(
            PSNR_IDENTICAL
            if np.array_equal(x, y)
            else peak_signal_noise_ratio(y, x, data_range=255)
        )
    return np.array(out)


def ssim(a, b):
    """(N,) structural similarity in [-1, 1] (1: identical)."""
    a, b = _pairs(a, b)
    return np.array(
        [structural_similarity(y, x, channel_axis=-1, data_range=255) for x, y in zip(a, b)]
    )


def landmark_distance(generated, reference):
    """(N,) mean landmark distance / the reference's inter-ocular distance."""
    g, r = _pairs(generated, reference)
    scale = np.linalg.norm(r[:, EYE_CORNERS[0]] - r[:, EYE_CORNERS[1]], axis=-1)
    return np.linalg.norm(g - r, axis=-1).mean(axis=1) / np.maximum(scale, 1e-6)  # NaN: no face


def pose_error(generated, reference):
    """(N,) mean |d pitch|, |d yaw|, |d roll| in degrees; each argument (N, 3) degrees."""
    g, r = _pairs(generated, reference)
    return np.abs(g - r).mean(axis=1)


def expression_distance(generated, reference):
    """(N,) mean over keypoints of the L2 norm of the expression difference, (N, K, 3) each."""
    g, r = _pairs(generated, reference)
    return np.linalg.norm(g - r, axis=-1).mean(axis=1)


def openness_error(generated, reference):
    """(N,) mean absolute difference of open ratios, (N, C) each."""
    g, r = _pairs(generated, reference)
    return np.abs(g - r).mean(axis=1)


def mean_ci(values, level=0.95):
    """(mean, half-width of the Student-t confidence interval) over clips; half-width NaN for one
    value."""
    from scipy import stats

    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float('nan'), float('nan')
    if len(v) == 1:
        return float(v[0]), float('nan')
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(half)
