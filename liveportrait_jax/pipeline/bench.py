"""Speed benchmark: compile time, ms/frame per stage and end-to-end frames/s per chunk size.

Random weights (speed does not depend on their values). Every timed call is run once to compile,
then `repeats` times; the minimum is reported (the least disturbed by other work on the machine).
"""

import os
import platform
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np


def _best(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return min(times)


def _timed_compile(fn):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t


def device_description():
    d = jax.devices()[0]
    kind = getattr(d, 'device_kind', d.platform)
    cpu = platform.processor() or platform.machine()
    return {
        'platform': d.platform,
        'device_kind': kind,
        'device_count': jax.device_count(),
        'host_cpus': os.cpu_count(),
        'host_processor': cpu,
        'jax': jax.__version__,
    }


def run_bench(config='full', chunks=(1, 4), dtype=jnp.float32, repeats=2, frames=None, log=print):
    """Returns a JSON-able dict of measurements (see README, "Benchmark")."""
    import liveportrait_jax as lp
    from liveportrait_jax import faces
    from liveportrait_jax.io import VideoWriter
    from liveportrait_jax.pipeline import AnimateOptions, animate, kernels
    from liveportrait_jax.pipeline.animation import compose_keypoints
    from liveportrait_jax.pipeline.demo_media import astronaut, write_demo_inputs

    models = lp.init_random_models(config, seed=0, dtype=dtype)
    out = {
        'config': config,
        'dtype': jnp.dtype(dtype).name,
        'device': device_description(),
        'repeats': repeats,
        'stages_ms_per_frame': {},
        'compile_s': {},
        'end_to_end': {},
    }
    log(f'bench: config {config}, dtype {out["dtype"]}, device {out["device"]}')

    # Host stages, per frame.
    img = astronaut()
    faces.detect_face(img)  # warm-up: the first call loads MediaPipe's model
    t = time.perf_counter()
    for _ in range(3):
        face = faces.detect_face(img)
        crop = faces.crop_source_image(img, face)
    out['stages_ms_per_frame']['landmarks + crop'] = 1000 * (time.perf_counter() - t) / 3
    mask = faces.make_paste_back_mask(512)
    result = np.random.default_rng(0).integers(0, 255, (512, 512, 3), np.uint8)
    t = time.perf_counter()
    for _ in range(5):
        faces.paste_back(result, crop.M_c2o, img, mask)
    out['stages_ms_per_frame']['paste-back'] = 1000 * (time.perf_counter() - t) / 5
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        with VideoWriter(os.path.join(tmp, 'x.mp4'), 25) as w:
            for _ in range(10):
                w.write(result)
        out['stages_ms_per_frame']['encode (h264)'] = 1000 * (time.perf_counter() - t) / 10

    rng = np.random.default_rng(0)
    for c in chunks:
        crops = rng.integers(0, 255, (c, 256, 256, 3), np.uint8)
        comp = {}
        comp['M'] = _timed_compile(lambda: kernels.motion(models, crops))
        comp['F'] = _timed_compile(lambda: kernels.feature(models, crops))
        info = {k: np.asarray(v) for k, v in kernels.motion(models, crops).items()}
        f_s = kernels.feature(models, crops)
        x_s = info['x_s']
        x_d = x_s + 0.01
        comp['W'] = _timed_compile(lambda: models.warp(f_s, x_s, x_d))
        warped = models.warp(f_s, x_s, x_d)['out']
        comp['G'] = _timed_compile(lambda: models.decode(warped))
        stage = {
            'M (motion extractor)': _best(lambda: kernels.motion(models, crops), repeats) / c,
            'F (appearance features)': _best(lambda: kernels.feature(models, crops), repeats) / c,
            'W (warping)': _best(lambda: models.warp(f_s, x_s, x_d), repeats) / c,
            'G (generator)': _best(lambda: models.decode(warped), repeats) / c,
        }
        src = {k: info[k][:1] for k in ('kp', 'R', 'exp', 'scale', 't', 'x_s')}
        drv = {k: info[k] for k in ('R', 'exp', 'scale', 't')}
        opts = AnimateOptions()

        def compose():
            return compose_keypoints(
                models, src, drv, x_s[:1], opts, source_is_video=False, driving_is_video=True
            )

        comp['keypoints + S'] = _timed_compile(compose)
        stage['keypoint math + S'] = _best(compose, repeats) / c
        out['compile_s'][str(c)] = comp
        out['stages_ms_per_frame'][f'chunk {c}'] = {k: 1000 * v for k, v in stage.items()}
        log(f'  chunk {c}: ' + ', '.join(f'{k} {1000 * v:.1f} ms' for k, v in stage.items()))

    # End to end: the whole animate() (decode, landmarks, crop, M, compose, W+G, paste-back,
    # encode) on the demo inputs, run twice; the second, warm run is reported.
    n = frames or max(chunks) * 2
    with tempfile.TemporaryDirectory() as tmp:
        src_path, drv_path = write_demo_inputs(os.path.join(tmp, 'in'), n_frames=n)
        for c in chunks:
            t = time.perf_counter()
            animate(models, src_path, drv_path, os.path.join(tmp, 'out'), chunk=c, progress=False)
            cold = time.perf_counter() - t
            t = time.perf_counter()
            res = animate(
                models, src_path, drv_path, os.path.join(tmp, 'out'), chunk=c, progress=False
            )
            warm = time.perf_counter() - t
            out['end_to_end'][str(c)] = {
                'frames': n,
                'first_run_s': cold,
                'warm_run_s': warm,
                'ms_per_frame': 1000 * warm / n,
                'frames_per_s': n / warm,
                'stages_s': res.timings,
            }
            log(
                f'  end to end, chunk {c}: {n / warm:.3f} frames/s ({1000 * warm / n:.0f} ms/frame)'
                f', first run {cold:.1f} s'
            )
    return out
