"""The web app's callbacks: animation, portrait editing, video lip retargeting.

Every event is registered with preprocess=False, so the callbacks receive Gradio's raw payloads
(file dicts with a 'path', plain numbers and booleans) and read uploads with this project's own
readers: a bad upload (a text file named .png, a video without frames, a photo without a face)
is reported with the message of our InputError / NoFaceError instead of a generic "Error" from
Gradio's image decoder.
"""

import collections
import functools
import logging
import os
import threading
import time
import uuid

import gradio as gr

from liveportrait_jax import faces
from liveportrait_jax.demo import RANDOM_LABEL
from liveportrait_jax.io import InputError, OutputError, load_image
from liveportrait_jax.pipeline import AnimateOptions, animate, editing
from liveportrait_jax.pipeline.options import options_from_values
from liveportrait_jax.pipeline.read import kind_of

log = logging.getLogger('liveportrait_jax')
# A shared web app is not the place for hour-long jobs: templates over 5 minutes at 30 fps are
# refused (the command line's limit is an hour, io.templates.DEFAULT_MAX_TEMPLATE_FRAMES).
APP_MAX_TEMPLATE_FRAMES = 9_000

# Errors that are the user's input (or a known output failure): shown as their message.
USER_ERRORS = (
    InputError,
    faces.NoFaceError,
    faces.NoAnimalFaceError,
    OutputError,
    ValueError,
    FileNotFoundError,
)


def payload_path(payload):
    """The local path of an upload payload (FileData dict, VideoData dict, str), or None."""
    if payload is None:
        return None
    if isinstance(payload, (str, os.PathLike)):
        return os.fspath(payload) or None
    if isinstance(payload, dict):
        if 'video' in payload:
            return payload_path(payload['video'])
        return payload.get('path')
    if isinstance(payload, (list, tuple)):  # (video, subtitles)
        return payload_path(payload[0]) if payload else None
    return getattr(payload, 'path', None)


def display_name(path):
    return os.path.basename(path) if path else path


def user_errors(fn):
    """Turns our input errors into gr.Error with their message (the file named by its basename)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except USER_ERRORS as e:
            log.warning('%s: %s', fn.__name__, e)
            raise gr.Error(_shorten_paths(str(e)), duration=None, print_exception=False) from None

    return wrapper


def _shorten_paths(message):
    """Absolute paths in a message -> file names (uploads live in Gradio's cache under /tmp; the
    server's directory layout is no business of the page)."""
    out = []
    for word in message.split(' '):
        stripped = word.strip('\'",:;()')
        if os.path.isabs(stripped) and len(stripped) > 1 and os.path.basename(stripped):
            word = word.replace(stripped, os.path.basename(stripped))
        out.append(word)
    return ' '.join(out)


def _float(v, name):
    try:
        return float(v)
    except (TypeError, ValueError):
        raise InputError(f'{name}: expected a number, got {v!r}') from None


def _int(v, name, lo=1, hi=1024):
    v = int(round(_float(v, name)))
    if not lo <= v <= hi:
        raise InputError(f'{name} must be between {lo} and {hi}, got {v}')
    return v


def _timings_md(result, extra=''):
    lines = [
        f'**{result.n_frames} frame(s)** at {result.fps:.2f} fps in '
        f'{result.timings.get("total", 0.0):.1f} s{extra}',
        '',
    ]
    lines += [f'- {k}: {v:.2f} s' for k, v in result.timings.items() if k != 'total']
    return '\n'.join(lines)


class AppHandlers:
    """The callbacks of one app instance (one model set, one output directory)."""

    def __init__(self, models, output_dir, *, animals=False, default_chunk=8):
        self.models = models
        self.output_dir = output_dir
        self.animals = animals
        self.default_chunk = default_chunk
        self._prepared = collections.OrderedDict()  # (path, scale, do_crop) -> PreparedPortrait
        self._lock = threading.Lock()
        self._prepare_lock = threading.Lock()  # one portrait preparation at a time
        self.note = f' ({RANDOM_LABEL}: the output is noise)' if models.random_weights else ''

    def _run_dir(self, kind):
        d = os.path.join(
            self.output_dir, f'{kind}-{time.strftime("%H%M%S")}-{uuid.uuid4().hex[:6]}'
        )
        os.makedirs(d, exist_ok=True)
        return d

    # -- uploads ------------------------------------------------------------------------------

    @user_errors
    def check_image(self, payload):
        """Upload check of an image: decodes it with our reader (clear error for a bad file)."""
        path = payload_path(payload)
        if path:
            load_image(path)

    @user_errors
    def check_media(self, payload):
        """Upload check of a video or template (file type and readability)."""
        path = payload_path(payload)
        if path:
            kind = kind_of(path)
            if kind == 'video':
                from liveportrait_jax.io import probe_video

                probe_video(path)
            elif kind == 'template':
                from liveportrait_jax.io import load_template

                load_template(path, max_frames=APP_MAX_TEMPLATE_FRAMES)
            else:
                load_image(path)

    # -- animation ----------------------------------------------------------------------------

    @user_errors
    def animate(
        self,
        source_image,
        source_video,
        driving_video,
        driving_image,
        driving_pickle,
        flag_normalize_lip,
        flag_relative_motion,
        flag_do_crop,
        flag_pasteback,
        flag_stitching,
        animation_region,
        driving_option,
        driving_multiplier,
        flag_crop_driving_video,
        scale,
        vx_ratio,
        vy_ratio,
        scale_crop_driving_video,
        vx_ratio_crop_driving_video,
        vy_ratio_crop_driving_video,
        driving_smooth_observation_variance,
        chunk,
        source_tab,
        driving_tab,
        faces='',
        motion_smoothing='none',
        motion_smoothing_strength=1.0,
        driving_script=None,
        progress=gr.Progress(track_tqdm=True),
    ):
        """Human animation; returns updates for (video, concat video, image, concat image,
        status). The option parameters are named as the AnimateOptions fields they set."""
        options = options_from_values(locals())
        sources = {'Image': payload_path(source_image), 'Video': payload_path(source_video)}
        drivings = {
            'Video': payload_path(driving_video),
            'Image': payload_path(driving_image),
            'Pickle': payload_path(driving_pickle),
            'Script': payload_path(driving_script),
        }
        source = _pick(sources, source_tab or 'Image')
        driving = _pick(drivings, driving_tab or 'Video')
        if source is None or driving is None:
            raise gr.Error(
                'Please upload the source portrait (image or video) and a driving '
                'video, image or motion template (.pkl).'
            )
        return self._animate(source, driving, options, chunk, progress, gif=False)

    @user_errors
    def animate_animals(
        self,
        source_image,
        driving_video,
        driving_pickle,
        flag_do_crop,
        flag_pasteback,
        driving_multiplier,
        flag_stitching,
        flag_crop_driving_video,
        crop_box,
        scale_crop_driving_video,
        vx_ratio_crop_driving_video,
        vy_ratio_crop_driving_video,
        chunk,
        driving_tab,
        progress=gr.Progress(track_tqdm=True),
    ):
        """Animal animation; returns updates for (video, gif, concat video, status)."""
        options = options_from_values(locals(), flag_write_gif=True)
        source = payload_path(source_image)
        driving = _pick(
            {'Video': payload_path(driving_video), 'Pickle': payload_path(driving_pickle)},
            driving_tab or 'Pickle',
        )
        if source is None or driving is None:
            raise gr.Error(
                'Please upload the source animal image and a driving video or '
                'motion template (.pkl).'
            )
        try:
            return self._animate(source, driving, options, chunk, progress, gif=True)
        except faces.NoAnimalFaceError as e:
            raise InputError(
                f'{e}: in this app, give it in the crop box field '
                '(x0,y0,x1,y1 in pixels of the photo)'
            ) from None

    def _animate(self, source, driving, options, chunk, progress, *, gif):
        chunk = _int(chunk, 'chunk size', 1, 256)
        if kind_of(driving) == 'video' and not options.flag_crop_driving_video:
            from liveportrait_jax.io import probe_video

            info = probe_video(driving)
            if info.width != info.height:
                gr.Info(
                    'The driving video is not square: it is cropped to the face automatically.',
                    duration=3,
                )
        progress(0.0, desc='reading and cropping the inputs')
        t = time.perf_counter()
        result = animate(
            self.models,
            source,
            driving,
            self._run_dir('animation'),
            options,
            chunk=chunk,
            animals=self.animals,
            progress=True,
            max_template_frames=APP_MAX_TEMPLATE_FRAMES,
        )
        log.info('app: animated %d frames in %.1f s', result.n_frames, time.perf_counter() - t)
        status = _timings_md(result, self.note)
        gr.Info('Done!', duration=2)
        if gif:
            return (
                gr.update(value=result.output),
                gr.update(value=result.gif),
                gr.update(value=result.concat),
                status,
            )
        if result.output.endswith('.jpg'):  # image source and driving image: a still
            return (
                gr.update(value=None, visible=False),
                gr.update(value=None, visible=False),
                gr.update(value=result.output, visible=True),
                gr.update(value=result.concat, visible=result.concat is not None),
                status,
            )
        return (
            gr.update(value=result.output, visible=True),
            gr.update(value=result.concat, visible=result.concat is not None),
            gr.update(value=None, visible=False),
            gr.update(value=None, visible=False),
            status,
        )

    # -- portrait editing ---------------------------------------------------------------------

    def _prepare(self, image, scale, do_crop):
        path = payload_path(image)
        if path is None:
            raise gr.Error('Please upload a source portrait to edit.')
        scale = _float(scale, 'crop scale')
        key = (path, os.path.getmtime(path) if os.path.exists(path) else 0, scale, bool(do_crop))
        with self._prepare_lock:  # the slider init and a render may ask at once: prepare once
            with self._lock:
                if key in self._prepared:
                    self._prepared.move_to_end(key)
                    return self._prepared[key]
            img = load_image(path)
            prepared = editing.prepare_portrait(
                self.models, img, scale=scale, do_crop=bool(do_crop), name=display_name(path)
            )
            with self._lock:
                self._prepared[key] = prepared
                while len(self._prepared) > 4:
                    self._prepared.popitem(last=False)
            return prepared

    @user_errors
    def init_edit(self, image, scale, do_crop, eye_ratio, lip_ratio):
        """On a new portrait: the eye/lip sliders start at the portrait's own ratios."""
        if payload_path(image) is None:
            return gr.update(), gr.update()
        p = self._prepare(image, scale, do_crop)
        eye = eye_ratio if p.source_eye_open is None else p.source_eye_open
        lip = lip_ratio if p.source_lip_open is None else p.source_lip_open
        return gr.update(value=eye), gr.update(value=lip)

    @user_errors
    def edit(
        self,
        eye_ratio,
        lip_ratio,
        head_pitch,
        head_yaw,
        head_roll,
        mov_x,
        mov_y,
        mov_z,
        lip_variation_zero,
        lip_variation_one,
        lip_variation_two,
        lip_variation_three,
        smile,
        wink,
        eyebrow,
        eyeball_direction_x,
        eyeball_direction_y,
        image,
        scale,
        stitching,
        do_crop,
        progress=gr.Progress(),
    ):
        """Image retargeting with the sliders; returns (edited crop, pasted back)."""
        values = dict(
            head_pitch=head_pitch,
            head_yaw=head_yaw,
            head_roll=head_roll,
            mov_x=mov_x,
            mov_y=mov_y,
            mov_z=mov_z,
            lip_variation_zero=lip_variation_zero,
            lip_variation_one=lip_variation_one,
            lip_variation_two=lip_variation_two,
            lip_variation_three=lip_variation_three,
            smile=smile,
            wink=wink,
            eyebrow=eyebrow,
            eyeball_direction_x=eyeball_direction_x,
            eyeball_direction_y=eyeball_direction_y,
        )
        progress(0.1, desc='cropping and encoding the portrait')
        prepared = self._prepare(image, scale, do_crop)
        sliders = editing.EditSliders(
            eye_ratio=None if eye_ratio is None else _float(eye_ratio, 'eyes-open ratio'),
            lip_ratio=None if lip_ratio is None else _float(lip_ratio, 'lip-open ratio'),
            **{k: _float(v, k) for k, v in values.items()},
        )
        progress(0.5, desc='rendering')
        res = editing.render_edit(self.models, prepared, sliders, stitching=bool(stitching))
        return res.crop, res.pasted

    @user_errors
    def add_keyframe(self, script_text, time, duration, fps, image, scale, do_crop, *values):
        """The editor's sliders (eye_ratio, lip_ratio, then editing.SLIDER_NAMES) as a keyframe
        at `time` of the motion script in `script_text` (YAML; empty: a new script of `duration`
        seconds at `fps`). Eye/lip targets are kept only where they differ from the portrait's own
        ratios. Returns (the script's YAML, a downloadable .yaml file)."""
        import yaml

        from liveportrait_jax.pipeline import motion_script

        data = yaml.safe_load(script_text) if (script_text or '').strip() else None
        if not isinstance(data, dict):
            data = {'duration': _float(duration, 'duration'), 'fps': _float(fps, 'fps'),
                    'interpolation': 'smooth', 'keyframes': []}  # fmt: skip
        data['duration'] = max(float(data.get('duration', 0)), _float(duration, 'duration'))
        eye, lip, *rest = values
        own = self._prepare(image, scale, do_crop) if payload_path(image) else None
        sliders = editing.EditSliders(
            eye_ratio=_differs_or_none(eye, own and own.source_eye_open),
            lip_ratio=_differs_or_none(lip, own and own.source_lip_open),
            **{k: _float(v, k) for k, v in zip(editing.SLIDER_NAMES, rest)},
        )
        key = motion_script.script_from_sliders([(_float(time, 'time'), sliders)], 1.0)
        frame = key['keyframes'][0]
        frames = [kf for kf in data.get('keyframes') or [] if kf.get('time') != frame['time']]
        data['keyframes'] = sorted(frames + [frame], key=lambda kf: kf['time'])
        path = os.path.join(self._run_dir('scripts'), 'editor_script.yaml')
        motion_script.save_script(data, path)  # validates: a bad time is a clear error
        return motion_script.dump_script(data, path), path

    # -- video lip retargeting ----------------------------------------------------------------

    @user_errors
    def retarget_video(
        self,
        lip_ratio,
        video,
        scale,
        smooth_variance,
        silence,
        do_crop,
        chunk,
        progress=gr.Progress(track_tqdm=True),
    ):
        """Returns (concat video, pasted-back video)."""
        path = payload_path(video)
        if path is None:
            raise gr.Error('Please upload a source video to retarget.')
        if kind_of(path) != 'video':
            raise InputError(f'{display_name(path)!r}: expected a video file')
        progress(0.0, desc='reading and cropping the video')
        out = editing.retarget_video(
            self.models,
            path,
            self._run_dir('retargeting'),
            lip_ratio=None if lip_ratio is None else _float(lip_ratio, 'lip-open ratio'),
            silence=bool(silence),
            scale=_float(scale, 'crop scale'),
            smooth_observation_variance=_float(smooth_variance, 'motion smooth strength'),
            do_crop=bool(do_crop),
            chunk=_int(chunk, 'chunk size', 1, 256),
            progress=True,
        )
        gr.Info('Done!', duration=2)
        return out.concat, out.output


def _differs_or_none(value, own):
    """An openness target for a keyframe: None when it is the portrait's own (no edit)."""
    if value is None or (own is not None and abs(float(value) - own) < 1e-6):
        return None
    return _float(value, 'openness target')


def _pick(paths, tab):
    """The upload of the selected tab, else the only one given (tab state can lag behind)."""
    if paths.get(tab):
        return paths[tab]
    given = [p for p in paths.values() if p]
    return given[0] if len(given) == 1 else None


def neutral_slider_values():
    """Reset values: the SLIDERS, the editing crop scale, stitching and crop as by default."""
    d = AnimateOptions()
    return tuple(s.neutral for s in editing.SLIDERS) + (
        editing.EDIT_SOURCE_SCALE,
        d.flag_stitching,
        d.flag_do_crop,
    )
