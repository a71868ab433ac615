"""Speed and memory benchmark on random weights (speed does not depend on their values).

Sections of the JSON `run_bench` returns (see README, "Benchmark"):
- `stages_ms_per_frame` / `compile_s`, per chunk size: device ms per frame of M, F, W, G, the
  keypoint math + S, and of the render with paste-back on the device (W + G + paste-back of an
  image source, as render.Renderer runs it) at a 512x512 and a 1920x1080 source frame. Each call is
  run once to compile, then `repeats` times; the minimum is reported (the least disturbed).
- `host_core_ms_per_frame`, per source size (512x512, 1920x1080): CPU time (core-ms) per frame of
  each host stage run alone over `host_frames` synthetic frames: this process's CPU (`time.process_time`, all threads) plus that of its finished child
  processes (`resource.getrusage(RUSAGE_CHILDREN)`: the ffmpeg decoders and encoders), best of
  `repeats`; the child part is also given on its own. The `animate() total` entry is the whole
  run's CPU per frame, device work included when the device is the CPU.
- `end_to_end`, per chunk size: frames/s of `animate()` (a second, warm run).
- `peak_rss_mb`, per driving-video length: peak resident memory of `animate()` in a fresh
  process (tiny random weights), to show whether memory grows with the video's length. On Linux
  it is the process's VmHWM: ru_maxrss survives exec, so a process started by a large one would
  report its parent's size. ffmpeg's memory is sampled from /proc and reported apart.
"""

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from liveportrait_jax import stopping
from liveportrait_jax.io.atomic import stop_process, track_process, track_temp_dir

HOST_SIZES = {'512': (512, 512), '1080p': (1080, 1920)}  # name -> (H, W) of the source frames
MOTION_CYCLE = 24  # frames of the synthetic videos' motion, repeated
HOST_NOTES = {
    'unit': 'CPU core-milliseconds per frame, best of the repeats',
    'measured as': 'time.process_time() (this process, all threads) + CPU of finished child '
    'processes (resource.getrusage(RUSAGE_CHILDREN), i.e. ffmpeg), around each stage run alone',
    'child processes': 'decode, encode and animate() total include ffmpeg CPU; their ffmpeg part '
    'is also in host_core_ms_per_frame_ffmpeg',
    'animate() total': 'one warm run (image source and driving video of that size, the source '
    'kept at its size, default outputs: video + comparison video, labels burned) divided by its '
    'frames; everything counted, so on a CPU backend this includes the device work',
    'landmarks': 'track_faces_stream, 1 worker; includes opening MediaPipe once per stream',
    'upload + download': 'as the render of a video source: np.stack of the chunk rows + '
    'jax.device_put of its frames and 256 crops, np.asarray of the finished frames (may be '
    'zero-copy on a CPU backend)',
}


# --- clocks ----------------------------------------------------------------------------------


def _best(fn, repeats):
    times = []
    for _ in range(repeats):
        stopping.check()
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return min(times)


def _timed_compile(fn):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t


def _cpu_now():
    """(CPU seconds of this process, all threads; of its finished (waited-for) child processes)."""
    import resource

    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time(), kids.ru_utime + kids.ru_stime


class CoreClock:
    """Accumulates CPU seconds of this process and of its child processes over `counting()`."""

    def __init__(self):
        self.process = self.children = 0.0

    @contextlib.contextmanager
    def counting(self):
        p0, c0 = _cpu_now()
        try:
            yield
        finally:
            p1, c1 = _cpu_now()
            self.process += p1 - p0
            self.children += c1 - c0

    @property
    def total(self):
        return self.process + self.children


def host_core_ms(stage, n_frames, repeats):
    """Best of `repeats` runs of stage(clock) -> (core-ms per frame, of which child processes)."""
    best = None
    for _ in range(repeats):
        stopping.check()
        clock = CoreClock()
        stage(clock)
        if best is None or clock.total < best.total:
            best = clock
    return 1000 * best.total / n_frames, 1000 * best.children / n_frames


def whole(fn):
    """A stage that counts all of fn()."""

    def stage(clock):
        with clock.counting():
            fn()

    return stage


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


# --- synthetic media -------------------------------------------------------------------------


def portrait_frames(hw, n=MOTION_CYCLE):
    """n (H, W, 3) uint8 frames: the astronaut scaled to the frame's short side, centred on grey,
    turning and shifting a little from frame to frame (a still video would decode unrealistically
    fast)."""
    from liveportrait_jax.pipeline.demo_media import astronaut

    H, W = hw
    side = min(H, W)
    img = cv2.resize(astronaut(), (side, side), interpolation=cv2.INTER_AREA)
    out = []
    for i in range(n):
        phase = 2 * np.pi * i / MOTION_CYCLE
        m = cv2.getRotationMatrix2D((side / 2, side / 2), 3.0 * np.sin(phase), 1.0)
        m[0, 2] += (W - side) / 2 + 0.02 * side * np.sin(phase)
        m[1, 2] += (H - side) / 2 + 0.01 * side * np.cos(phase)
        out.append(cv2.warpAffine(img, m, (W, H), borderValue=(128, 128, 128)))
    return out


def write_looped_video(path, cycle, n_frames, fps=25):
    """Writes n_frames frames cycling through `cycle` (streamed: only the cycle is held)."""
    from liveportrait_jax.io import VideoWriter

    with VideoWriter(path, fps) as w:
        for i in range(n_frames):
            w.write(cycle[i % len(cycle)])
    return path


# --- device stages, per chunk size -----------------------------------------------------------


def bench_crop_matrix(hw, dsize, side=0.6, degrees=8.0):
    """(3, 3) float32 frame -> crop map of a rotated centred square (side x the short side): the
    device's work does not depend on where the face is, so the device section needs no landmarks."""
    h, w = hw
    scale = dsize / (side * min(h, w))
    M = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, scale)
    M[:, 2] += dsize / 2 - np.array([w / 2, h / 2])
    return np.vstack([M, [0, 0, 1]]).astype(np.float32)


def paste_renderer(models, image, chunk, options):
    """A render.Renderer for one source image and a chunk of driving keypoints, built as the
    animation builds it (a crop of the source, M for x_s); returns (renderer, sharded x_d)."""
    from liveportrait_jax.faces.crop import crop_with_matrix
    from liveportrait_jax.pipeline import kernels
    from liveportrait_jax.pipeline.chunks import Chunker
    from liveportrait_jax.pipeline.plan import Plan, SourcePlan
    from liveportrait_jax.pipeline.read import media_from_frames
    from liveportrait_jax.pipeline.render import Renderer

    M_o2c = bench_crop_matrix(image.shape[:2], options.dsize)
    M_c2o = np.linalg.inv(M_o2c).astype(np.float32)
    crop_256 = crop_with_matrix(image, M_o2c, options.dsize)
    x_s = np.asarray(kernels.motion(models, crop_256[None])['x_s'], np.float32)
    media = media_from_frames([image], name='<bench source>', is_video=False)
    src = SourcePlan(
        media, 1, image.shape[:2], {}, M_o2c[None], M_c2o[None], None, None,
        image=image, crop_256=crop_256,
    )  # fmt: skip
    x_d = np.repeat(x_s + 0.01, chunk, axis=0)
    chunker = Chunker(chunk)
    # Crops kept, as animate keeps them for the comparison video (written by default).
    renderer = Renderer(models, Plan(src, None, chunk, x_s, x_d), options, chunker, keep_crops=True)
    return renderer, chunker.shard(x_d)


def render_paste_stages(models, c, repeats, sources, options):
    """Device ms/frame and compile s of W + G + paste-back for each source image {name: image}."""
    stage, comp = {}, {}
    for name, image in sources.items():
        r, x_d = paste_renderer(models, image, c, options)
        key = f'W+G+paste-back, image source {name} (device)'
        comp[key] = _timed_compile(lambda: r.fn(x_d))
        stage[key] = 1000 * _best(lambda: r.fn(x_d), repeats) / c
    return stage, comp


def network_stages(models, c, repeats, rng):
    """Device ms/frame and compile s of M, F, W, G and the keypoint math + S at chunk c."""
    from liveportrait_jax.pipeline import AnimateOptions, kernels
    from liveportrait_jax.pipeline.compose import compose_keypoints

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
        'M (motion extractor)': _best(lambda: kernels.motion(models, crops), repeats),
        'F (appearance features)': _best(lambda: kernels.feature(models, crops), repeats),
        'W (warping)': _best(lambda: models.warp(f_s, x_s, x_d), repeats),
        'G (generator)': _best(lambda: models.decode(warped), repeats),
    }
    src = {k: info[k][:1] for k in ('kp', 'R', 'exp', 'scale', 't', 'x_s')}
    drv = {k: info[k] for k in ('R', 'exp', 'scale', 't')}
    opts = AnimateOptions()

    def compose():
        return compose_keypoints(
            models, src, drv, x_s[:1], opts, source_is_video=False, driving_is_video=True
        )

    comp['keypoints + S'] = _timed_compile(compose)
    stage['keypoint math + S'] = _best(compose, repeats)
    return {k: 1000 * v / c for k, v in stage.items()}, comp


# --- host stages, per source size ------------------------------------------------------------


def _drain(iterable):
    n = 0
    for _ in iterable:
        n += 1
    return n


def transfer_stage(frames, crops, chunk):
    """Upload + download as the render of a video source does it (see HOST_NOTES); the device
    work between them is not counted."""
    touch = jax.jit(lambda f: f ^ jnp.uint8(1))  # a new device array to copy back

    def stage(clock):
        for s in range(0, len(frames), chunk):
            with clock.counting():
                up = jax.device_put(np.stack(frames[s : s + chunk]))
                up_crops = jax.device_put(np.stack(crops[s : s + chunk]))
                jax.block_until_ready((up, up_crops))
            out = jax.block_until_ready(touch(up))
            with clock.counting():
                np.asarray(out)

    return stage


def animate_stage(models, source, driving, output_dir, options, chunk, n_frames):
    """A warm animate() run over n_frames (the first call compiles, uncounted); returns
    (stage, frames)."""
    from liveportrait_jax.pipeline import animate

    def run():
        return animate(
            models, source, driving, output_dir, options, chunk=chunk, progress=False,
            max_frames=n_frames,
        )  # fmt: skip

    n = run().n_frames
    return whole(run), n


def input_stages(frames, video, options, repeats):
    """Decode, landmarks and crops of n frames (also in `video`): ({stage: (ms, ffmpeg ms)},
    the source crops)."""
    from liveportrait_jax import faces
    from liveportrait_jax.pipeline.inputs import driving_geometry, iter_driving_crops
    from liveportrait_jax.pipeline.read import media_from_frames, open_media

    n, dsize, res = len(frames), options.dsize, {}
    res['decode'] = host_core_ms(whole(lambda: _drain(open_media(video).frames())), n, repeats)

    def track():
        return list(faces.landmarks.track_faces_stream(iter(frames), workers=1))

    found = [face for _, face in track()]  # also the warm-up (MediaPipe's model load)
    res['landmarks'] = host_core_ms(whole(track), n, repeats)

    def crop_all():
        return [faces.crop_source_image(f, face, dsize=dsize) for f, face in zip(frames, found)]

    crops = crop_all()
    res['crop: source frame (crop_source_image)'] = host_core_ms(whole(crop_all), n, repeats)
    res['crop: again with its matrix (crop_with_matrix)'] = host_core_ms(
        whole(lambda: [faces.crop.crop_with_matrix(f, c.M_o2c, dsize) for f, c in zip(frames, crops)]),
        n, repeats,
    )  # fmt: skip
    media = media_from_frames(frames, name=video, is_video=True)
    drv_opts = options.replace(flag_crop_driving_video=True)
    geometry = driving_geometry(media, drv_opts, workers=1)
    res['driving crop (iter_driving_crops)'] = host_core_ms(
        whole(lambda: _drain(iter_driving_crops(media, drv_opts, geometry))), n, repeats
    )
    return res, crops


def output_stages(frames, crops, path, chunk, repeats):
    """Upload + download, encode (to `path`), comparison panel, label and the host's paste-back
    of n frames and their source crops: {stage: (ms, ffmpeg ms)}."""
    from liveportrait_jax import faces
    from liveportrait_jax.io import VideoWriter
    from liveportrait_jax.pipeline import outputs as out_lib

    n, res = len(frames), {}
    crops_256 = [c.image_256 for c in crops]
    res['upload + download'] = host_core_ms(transfer_stage(frames, crops_256, chunk), n, repeats)

    def encode():
        with VideoWriter(path, 25) as w:
            for f in frames:
                w.write(f)

    res['encode (h264)'] = host_core_ms(whole(encode), n, repeats)
    items = [{'driving': c.image_256, 'source': c.image_256, 'crop': c.image} for c in crops]
    res['comparison panel'] = host_core_ms(
        whole(lambda: [out_lib.comparison_panel(it) for it in items]), n, repeats
    )
    res['label (burn_label)'] = host_core_ms(
        whole(lambda: [out_lib.burn_label(f) for f in frames]), n, repeats
    )
    mask = faces.make_paste_back_mask(crops[0].image.shape[0])
    res['paste-back on the host (cv2, reference; animate pastes on the device)'] = host_core_ms(
        whole(lambda: [faces.paste_back(c.image, c.M_c2o, f, mask) for f, c in zip(frames, crops)]),
        n, repeats,
    )  # fmt: skip
    return res


def host_stages(models, hw, n, n_animate, chunk, repeats, tmp):
    """{stage: (core-ms per frame, of which ffmpeg)} for n frames of size hw = (H, W) (the
    animate() total over n_animate of them: an image source, a driving video, both that size)."""
    from liveportrait_jax.io import save_image
    from liveportrait_jax.pipeline import AnimateOptions

    options = AnimateOptions(source_max_dim=max(hw))  # keep the source at its size
    frames = portrait_frames(hw, n)
    name = os.path.join(tmp, f'{hw[1]}x{hw[0]}')
    video = write_looped_video(f'{name}.mp4', frames, n)
    res, crops = input_stages(frames, video, options, repeats)
    res.update(output_stages(frames, crops, f'{name}_out.mp4', chunk, repeats))
    save_image(f'{name}_source.png', frames[0])
    if n_animate > n:
        video = write_looped_video(f'{name}_driving.mp4', frames, n_animate)
    stage, n_out = animate_stage(
        models, f'{name}_source.png', video, f'{name}_out', options, chunk, n_animate
    )
    res['animate() total'] = host_core_ms(stage, n_out, 1)
    return res


def host_section(models, n, n_animate, chunk, repeats, log):
    """The host_core_ms_per_frame and host_core_ms_per_frame_ffmpeg sections."""
    total, ffmpeg = {}, {}
    with track_temp_dir(tempfile.TemporaryDirectory()) as tmp:  # removed on a forced exit too
        for size, hw in HOST_SIZES.items():
            res = host_stages(models, hw, n, n_animate, chunk, repeats, tmp)
            total[size] = {k: v[0] for k, v in res.items()}
            ffmpeg[size] = {k: v[1] for k, v in res.items() if v[1] > 0}
            log(
                f'  host core-ms/frame at {size}: '
                + ', '.join(f'{k} {v:.1f}' for k, v in total[size].items())
            )
    return {
        'host_core_ms_per_frame': total,
        'host_core_ms_per_frame_ffmpeg': ffmpeg,
        'host_frames': {'stages': n, 'animate() total': n_animate},
        'host_chunk': chunk,
        'host_notes': HOST_NOTES,
    }


# --- peak memory against the driving video's length ------------------------------------------

_RSS_CHILD = (
    'import sys; from liveportrait_jax.pipeline.bench import rss_child; rss_child(*sys.argv[1:])'
)
RSS_SAMPLE_S = 0.1


def _status_kb(pid, field):
    """A 'kB' field of /proc/<pid>/status (e.g. VmHWM, VmRSS), or None."""
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def own_peak_rss_mb():
    """Peak RSS of this process in MiB. Linux: VmHWM, which restarts at exec (ru_maxrss does not:
    a process started by a large one would report its parent's memory). Elsewhere: ru_maxrss."""
    kb = _status_kb('self', 'VmHWM')
    if kb is not None:
        return kb / 1024
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (2**20 if sys.platform == 'darwin' else 2**10)  # bytes (macOS) / KiB -> MiB


def _read(path):
    with open(path) as f:
        return f.read()


def _child_pids():
    """Live child processes of this one that have exec'd another program (/proc, Linux)."""
    me, pids = os.getpid(), []
    with contextlib.suppress(OSError):
        own = _read(f'/proc/{me}/comm').strip()
        for name in os.listdir('/proc'):
            if not name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = _read(f'/proc/{name}/stat')
                comm, rest = (
                    stat[stat.index('(') + 1 : stat.rindex(')')],
                    stat[stat.rindex(')') + 2 :],
                )
                if int(rest.split()[1]) == me and comm != own:  # not a fork before its exec
                    pids.append(name)
    return pids


class ChildRssSampler:
    """Samples the memory of this process's child processes (the ffmpeg decoders and encoders)
    every RSS_SAMPLE_S from /proc: `largest_mb`, the highest peak (VmHWM) of one child, and
    `sum_mb`, the highest sum of the RSS of the children alive at one sample. None off Linux."""

    def __init__(self):
        self.largest_mb = self.sum_mb = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='rss-sampler', daemon=True)

    def __enter__(self):
        if os.path.isdir('/proc/self'):
            self.largest_mb = self.sum_mb = 0.0
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self):
        while not self._stop.wait(RSS_SAMPLE_S):
            pids = _child_pids()
            hwm = [_status_kb(p, 'VmHWM') or 0 for p in pids]
            rss = [_status_kb(p, 'VmRSS') or 0 for p in pids]
            self.largest_mb = max([self.largest_mb, *(k / 1024 for k in hwm)])
            self.sum_mb = max(self.sum_mb, sum(rss) / 1024)


def rss_child(source, driving, output_dir, chunk):
    """In a fresh process: animate with tiny random weights; prints peak RSS etc. as JSON."""
    import liveportrait_jax as lp
    from liveportrait_jax.pipeline import animate

    models = lp.init_random_models('tiny', seed=0)
    t = time.perf_counter()
    with ChildRssSampler() as kids:
        res = animate(models, source, driving, output_dir, chunk=int(chunk), progress=False)
    out = {
        'frames': res.n_frames,
        'wall_s': time.perf_counter() - t,
        'peak_rss_mb': own_peak_rss_mb(),
        'ffmpeg_largest_peak_mb': kids.largest_mb,
        'ffmpeg_sum_peak_mb': kids.sum_mb,
    }
    print(json.dumps(out))


def run_rss_child(source, driving, output_dir, chunk):
    # Tracked, so that a stopped bench does not leave the child running (io.atomic kills it).
    proc = track_process(
        subprocess.Popen(
            [sys.executable, '-c', _RSS_CHILD, source, driving, output_dir, str(chunk)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    )
    try:
        out, err = proc.communicate()
    finally:
        stop_process(proc)
    if proc.returncode != 0:
        raise RuntimeError(f'peak-RSS run failed ({proc.returncode}): {err[-2000:]}')
    return json.loads(out.strip().splitlines()[-1])


def rss_section(lengths, side, chunk, log):
    """Peak RSS of animate() (separate processes) for a driving video of each length."""
    from liveportrait_jax.io import save_image
    from liveportrait_jax.pipeline.demo_media import astronaut, synth_driving_frames

    runs = {}
    with track_temp_dir(tempfile.TemporaryDirectory()) as tmp:  # removed on a forced exit too
        source = os.path.join(tmp, 'source.png')
        save_image(source, astronaut())
        cycle = list(synth_driving_frames(MOTION_CYCLE, size=side))
        for n in sorted(set(lengths)):
            driving = write_looped_video(os.path.join(tmp, f'driving_{n}.mp4'), cycle, n)
            runs[str(n)] = r = run_rss_child(source, driving, os.path.join(tmp, f'out_{n}'), chunk)
            os.remove(driving)
            shutil.rmtree(os.path.join(tmp, f'out_{n}'), ignore_errors=True)
            log(f'  peak RSS, {n} driving frames: {r["peak_rss_mb"]:.0f} MB ({r["wall_s"]:.0f} s)')
    rss = {k: r['peak_rss_mb'] for k, r in runs.items()}
    keys = list(rss)  # shortest first
    return {
        'peak_rss_mb': rss,
        'peak_rss_ratio_longest_to_shortest': rss[keys[-1]] / rss[keys[0]],
        'peak_rss_mb_ffmpeg_children': {
            'largest single process': {k: r['ffmpeg_largest_peak_mb'] for k, r in runs.items()},
            'all at once (sum)': {k: r['ffmpeg_sum_peak_mb'] for k, r in runs.items()},
        },
        'peak_rss_runs': {
            'what': 'animate() in a fresh process per driving-video length: tiny random weights, '
            f'512x512 source image, {side}x{side} driving video, chunk {chunk}, default outputs',
            'measured as': 'the process: its VmHWM (Linux; ru_maxrss elsewhere), children not '
            f'included; ffmpeg children: /proc sampled every {RSS_SAMPLE_S} s',
            'frames': {k: r['frames'] for k, r in runs.items()},
            'wall_s': {k: r['wall_s'] for k, r in runs.items()},
        },
    }


# --- end to end ------------------------------------------------------------------------------


def end_to_end(models, chunks, n, log):
    """frames/s of animate() on the demo inputs per chunk size (the second, warm run)."""
    from liveportrait_jax.pipeline import animate
    from liveportrait_jax.pipeline.demo_media import write_demo_inputs

    out = {}
    with track_temp_dir(tempfile.TemporaryDirectory()) as tmp:  # removed on a forced exit too
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
            out[str(c)] = {
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


SECTIONS = ('device', 'host', 'end-to-end', 'rss')


def run_bench(
    config='full', chunks=(1, 4), dtype=jnp.float32, repeats=2, frames=None, log=print,
    *, host_frames=32, rss_frames=(100, 400), rss_size=512, sections=SECTIONS,
):  # fmt: skip
    """Returns a JSON-able dict of measurements (see the module docstring).

    sections: which of SECTIONS to run ('device' stages, 'host' stages, 'end-to-end', 'rss'); a
      machine without MediaPipe or ffmpeg can still run 'device'.

    frames: frames of the end-to-end runs and of the host section's whole animate() (default:
      twice the largest chunk); host_frames: of the other host stages.
    rss_frames: driving-video lengths of the peak-RSS runs (empty: skipped); rss_size: their side.
    """
    import liveportrait_jax as lp
    from liveportrait_jax.pipeline import AnimateOptions
    from liveportrait_jax.pipeline.demo_media import astronaut

    models = lp.init_random_models(config, seed=0, dtype=dtype)
    out = {
        'config': config,
        'dtype': jnp.dtype(dtype).name,
        'device': device_description(),
        'repeats': repeats,
        'stages_ms_per_frame': {},
        'compile_s': {},
    }
    log(f'bench: config {config}, dtype {out["dtype"]}, device {out["device"]}')
    rng = np.random.default_rng(0)
    sources = {'512x512': astronaut(), '1920x1080': portrait_frames(HOST_SIZES['1080p'], 1)[0]}
    for c in chunks if 'device' in sections else ():
        stage, comp = network_stages(models, c, repeats, rng)
        paste_stage, paste_comp = render_paste_stages(models, c, repeats, sources, AnimateOptions())
        stage.update(paste_stage), comp.update(paste_comp)
        out['compile_s'][str(c)] = comp
        out['stages_ms_per_frame'][f'chunk {c}'] = stage
        log(f'  chunk {c}: ' + ', '.join(f'{k} {v:.1f} ms' for k, v in stage.items()))
    n = frames or max(chunks) * 2
    if 'host' in sections:
        out.update(host_section(models, host_frames, n, max(chunks), repeats, log))
    if 'end-to-end' in sections:
        out['end_to_end'] = end_to_end(models, chunks, n, log)
    if rss_frames and 'rss' in sections:
        out.update(rss_section(rss_frames, rss_size, max(chunks), log))
    return out
