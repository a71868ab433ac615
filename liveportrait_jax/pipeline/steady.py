"""Steady motion: smoothing of the driving motion over time (`--motion-smoothing`).

The reference smooths only a source video's composed motion (motion.kalman_smooth); jitter of the
driving motion itself, the most reported problem of LivePortrait (a trembling head, a face that
grows and shrinks), goes straight into the animation of an image source. Two filters, both over
every motion parameter (rotation, translation, scale, expression) and the eye/lip ratios:

* ``'kalman'``: a forward-backward (Rauch-Tung-Striebel) smoother with a random-walk model, as the
  reference's source-video smoothing. It uses the whole sequence (the first pass has it), so it
  adds no lag: a head turn stays where it is in time, only the tremor goes.
* ``'one-euro'``: the One Euro filter (Casiez, Roussel, Vogel, CHI 2012), a causal low-pass whose
  cutoff rises with speed: steady when the head is still, quick when it moves. Causal, so it lags
  a little on fast motion (measured in the README); for live or streamed use.

Scale: the parameters differ by orders of magnitude (rotation entries ~1, translation ~0.1,
expression ~0.01), so each column is divided by its own spread (standard deviation over the clip)
before filtering and multiplied back after; the filters' settings are then in units of "spreads",
the same for every parameter, and `strength` alone sets them:

* kalman: time constant tau = 2 * strength frames at 25 fps (scaled with fps), i.e. process /
  observation variance = 1 / tau^2;
* one-euro: min_cutoff = 1 / strength Hz, d_cutoff = 1 Hz, and beta = 0.05 / strength with the
  speed measured in units of the column's own noise level (estimated from its median absolute
  second difference), so that tremor barely opens the filter and real motion does.
"""

import numpy as np

from liveportrait_jax.pipeline.motion import kalman_smooth

METHODS = ('none', 'one-euro', 'kalman')
REFERENCE_FPS = 25.0  # the rates above are tuned for head motion at this frame rate
# Expression (and the eye/lip ratios) is smoothed at this fraction of the pose's strength: blinks
# and winks last a few frames, and full-strength smoothing would flatten them (on the reference's
# wink template, kalman at strength 1 kept 44-85 % of the eyelid keypoints' travel, at 0.5 65-97 %).
EXPRESSION_SHARE = 0.5


def _columns(x):
    x = np.asarray(x, np.float64)
    return x.reshape(len(x), -1), x.shape


def _normalised(y):
    mean = y.mean(axis=0)
    spread = y.std(axis=0)
    spread = np.where(spread > 1e-12, spread, 1.0)  # a constant column stays as it is
    return (y - mean) / spread, mean, spread


def _noise_level(z):
    """Per-column white-noise level of normalised (N, D) columns, from the median absolute second
    difference (a second difference of white noise of level s has deviation sqrt(6) s)."""
    if len(z) < 3:
        return np.ones(z.shape[1])
    d2 = np.abs(np.diff(z, n=2, axis=0))
    return np.maximum(np.median(d2, axis=0) / (0.6745 * np.sqrt(6.0)), 1e-3)


def _one_euro(y, fps, min_cutoff, beta, d_cutoff=1.0):
    """The One Euro filter over (N, D) columns, all at once; starts at the first sample."""

    def alpha(cutoff):
        tau = 1.0 / (2.0 * np.pi * cutoff)
        return 1.0 / (1.0 + tau * fps)

    out = np.empty_like(y)
    out[0] = prev = y[0]
    d_prev = np.zeros(y.shape[1])
    a_d = alpha(d_cutoff)
    for i in range(1, len(y)):
        d = (y[i] - prev) * fps
        d_prev = d_prev + a_d * (d - d_prev)
        a = alpha(min_cutoff + beta * np.abs(d_prev))
        prev = prev + a * (y[i] - prev)
        out[i] = prev
    return out


def smooth_series(x, method, strength=1.0, fps=REFERENCE_FPS):
    """(N, ...) float array smoothed along its first (time) axis, every other entry on its own.

    method: 'none' (a copy), 'one-euro' or 'kalman' (see the module docstring); strength > 0:
    higher is steadier; fps: frames per second of the series. Returns float32, x's shape.
    """
    if method not in METHODS:
        raise ValueError(f'motion smoothing must be one of {METHODS}, got {method!r}')
    if not strength > 0:
        raise ValueError(f'motion smoothing strength must be positive, got {strength!r}')
    y, shape = _columns(x)
    if method == 'none' or len(y) < 2:
        return y.reshape(shape).astype(np.float32)
    fps = float(fps or REFERENCE_FPS)
    z, mean, spread = _normalised(y)
    if method == 'kalman':
        tau = 2.0 * strength * fps / REFERENCE_FPS
        z = kalman_smooth(z, observation_variance=1.0, process_variance=1.0 / tau**2)
    else:
        # Speeds in units of the column's noise: the tremor itself then hardly opens the filter,
        # while real motion (tens to hundreds of noise levels a second) does.
        noise = _noise_level(z)
        z = _one_euro(z / noise, fps, min_cutoff=1.0 / strength, beta=0.05 / strength) * noise
    return (np.asarray(z, np.float64) * spread + mean).reshape(shape).astype(np.float32)


def _nearest_rotations(R):
    """(N, 3, 3) matrices -> the nearest rotations (polar decomposition: U V^T, det +1)."""
    u, _, vt = np.linalg.svd(R)
    d = np.sign(np.linalg.det(u @ vt))
    u[:, :, 2] *= d[:, None]
    return u @ vt


def smooth_motion(motion, method, strength=1.0, fps=REFERENCE_FPS):
    """A motion dict (R (N, 3, 3), exp (N, K, 3), t (N, 3), scale (N, 1), kp, x_s) with R, exp, t
    and scale smoothed over time; R is projected back onto rotations, and x_s (when present with
    kp) recomputed from the smoothed values (x_s = scale * (kp @ R + exp) + [tx, ty, 0]). kp and
    any other key are kept. 'none' returns `motion` itself."""
    if method == 'none':
        return motion
    out = dict(motion)
    for k in ('R', 'exp', 't', 'scale'):
        if motion.get(k) is not None:
            share = EXPRESSION_SHARE if k == 'exp' else 1.0
            out[k] = smooth_series(motion[k], method, strength * share, fps)
    if motion.get('R') is not None:
        out['R'] = _nearest_rotations(out['R'].astype(np.float64)).astype(np.float32)
    if motion.get('x_s') is not None and motion.get('kp') is not None:
        kp = np.asarray(motion['kp'], np.float32)
        x = out['scale'][:, :, None] * (kp @ out['R'] + out['exp'])
        x[:, :, :2] += out['t'][:, None, :2]
        out['x_s'] = x.astype(np.float32)
    return out


def jitter(x):
    """Frame-to-frame jitter of an (N, ...) series: the mean absolute second difference."""
    y, _ = _columns(x)
    if len(y) < 3:
        return 0.0
    return float(np.abs(np.diff(y, n=2, axis=0)).mean())


def lag_frames(reference, smoothed, max_lag=15):
    """The delay (frames, 0..max_lag) by which `smoothed` best follows `reference`: the shift that
    minimises their mean squared difference (both (N, ...))."""
    a, _ = _columns(reference)
    b, _ = _columns(smoothed)
    n = len(a)
    errors = [np.mean((b[k:] - a[: n - k]) ** 2) for k in range(min(max_lag, n - 2) + 1)]
    return int(np.argmin(errors))
