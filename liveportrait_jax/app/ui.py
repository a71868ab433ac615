"""The page: the reference app's panels and controls (app.py / app_animals.py), over our pipeline.

Human mode: animation (source image or video; driving video, image or motion template; crop and
inference options; chunk size), portrait editing (image retargeting sliders) and video lip
retargeting. Animal mode: animation of an animal photo with a driving video or template.
Nothing is fetched from the internet: analytics off, no share link, Gradio's bundled fonts.
"""

import inspect
import logging
import os
import tempfile

import gradio as gr

from liveportrait_jax.app.handlers import AppHandlers, neutral_slider_values
from liveportrait_jax.demo import RANDOM_LABEL
from liveportrait_jax.pipeline import editing
from liveportrait_jax.pipeline.options import SCHEMA

log = logging.getLogger('liveportrait_jax')

RANDOM_BANNER = (
    f'{RANDOM_LABEL} mode: these models were initialised at random, so every '
    'result is noise, not an animation. Convert the released LivePortrait weights '
    '(README, "Weights") and start the app with --weights DIR.'
)
_BANNER_HTML = (
    '<div id="lp-random-weights" style="background:#b91c1c;color:#fff;'
    'padding:10px 14px;border-radius:8px;font-weight:600">&#9888; {}</div>'
)
SOURCE_CROP_FIELDS = ('flag_do_crop', 'scale', 'vx_ratio', 'vy_ratio')
DRIVING_CROP_FIELDS = (
    'flag_crop_driving_video',
    'scale_crop_driving_video',
    'vx_ratio_crop_driving_video',
    'vy_ratio_crop_driving_video',
)


def _control(name, value=None, label=None):
    """The control of AnimateOptions field `name`, from its schema: its default (or `value`), its
    help as the info line, its range and step, or its choices."""
    field, m = SCHEMA[name], SCHEMA[name].metadata
    value = field.default if value is None else value
    kw = dict(label=label or name.removeprefix('flag_').replace('_', ' '), info=m['help'])
    if field.type is bool:
        return gr.Checkbox(value, **kw)
    if m['choices']:
        return gr.Radio(list(m['choices']), value=value, **kw)
    if name == 'crop_box':
        return gr.Textbox(','.join(map(str, value or ())), placeholder='e.g. 120,80,420,380', **kw)
    if field.type is str:
        return gr.Textbox(value, **kw)
    return gr.Number(
        value,
        minimum=m['min'],
        maximum=m['max'],
        step=m['step'],
        precision=0 if field.type is int else None,
        **kw,
    )


def _controls(names):
    """A row of schema controls, {field name: control}."""
    with gr.Row():
        return {name: _control(name) for name in names}


def _inputs(handler, components):
    """`components` ({parameter name: component}) in the order of the handler's parameters."""
    return [components[p] for p in inspect.signature(handler).parameters if p in components]


def _options_md(animals):
    if animals:
        return (
            'Upload an animal photo (a cat-face detector crops it; or give a crop box) and a '
            'driving video of a human face or a motion template (.pkl), then press '
            '**Animate**.'
        )
    return (
        'Upload a source portrait (image or video) and a driving video, driving image or '
        'motion template (.pkl), then press **Animate**. Results are written to the '
        'output directory as well as shown here.'
    )


def build_app(
    models, *, animals=False, output_dir=None, default_chunk=8, examples=True, title=None
):
    """The app's gr.Blocks for `models` (human or animal set).

    Args:
      models: LivePortraitModels; random weights put a RANDOM WEIGHTS banner on the page.
      animals: the animal-mode page (animation only, cat-face cropping, no stitching).
      output_dir: where results go (default: a new temporary directory).
      default_chunk: initial value of the chunk-size control (frames per device batch).
      examples: offer the built-in demo media (scikit-image astronaut and a clip made from it).
    """
    output_dir = output_dir or tempfile.mkdtemp(prefix='liveportrait-app-')
    os.makedirs(output_dir, exist_ok=True)
    h = AppHandlers(models, output_dir, animals=animals, default_chunk=default_chunk)
    demo_media = _demo_media(output_dir) if examples else None
    title = title or ('LivePortrait (JAX) - animals' if animals else 'LivePortrait (JAX)')

    with gr.Blocks(title=title, analytics_enabled=False) as app:
        app.lp_handlers = h
        app.lp_output_dir = output_dir
        gr.Markdown(
            f'# {title}\nPortrait animation with stitching and retargeting control '
            '(LivePortrait, Guo et al. 2024), running on JAX.'
        )
        if models.random_weights:
            gr.HTML(_BANNER_HTML.format(RANDOM_BANNER), elem_id='lp-banner')
        if animals:
            _animal_animation(h, default_chunk, demo_media)
        else:
            _human_animation(h, default_chunk, demo_media)
            _image_editing(h, demo_media)
            _video_retargeting(h, default_chunk, demo_media)
        gr.Markdown(f'<small>Model set: {models!r}. Outputs: `{output_dir}`.</small>')
    app.queue(default_concurrency_limit=1)
    return app


def launch_app(app, *, host='127.0.0.1', port=7860, block=True, quiet=False):
    """Serves `app` locally (no share link). block=False returns at once (server in a thread);
    returns (server app, local url)."""
    server, url, _ = app.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        ssr_mode=False,
        prevent_thread_lock=not block,
        show_error=True,
        quiet=quiet,
        pwa=False,
        mcp_server=False,
        allowed_paths=[getattr(app, 'lp_output_dir', tempfile.gettempdir())],
    )
    return server, url


def _demo_media(output_dir):
    try:
        from liveportrait_jax.pipeline.demo_media import write_demo_inputs

        return write_demo_inputs(os.path.join(output_dir, 'demo_inputs'), n_frames=24, fps=12)
    except Exception as e:  # examples are a convenience; never fail the app over them
        log.warning('demo media not written: %s', e)
        return None


# Events that run the networks share one queue with one worker: one device job at a time.
DEVICE = dict(concurrency_id='device', concurrency_limit=1)


def _out_video(label, elem_id):
    # No 'share' button: it uploads to Hugging Face; results stay on this machine.
    return gr.Video(
        label=label, autoplay=False, interactive=False, buttons=['download'], elem_id=elem_id
    )


def _out_image(label, elem_id, *, type='filepath', visible=True):
    return gr.Image(
        type=type,
        label=label,
        interactive=False,
        format='png',
        visible=visible,
        buttons=['download', 'fullscreen'],
        elem_id=elem_id,
    )


def _chunk_control(default_chunk, elem_id):
    return gr.Slider(
        1,
        64,
        value=default_chunk,
        step=1,
        label='chunk size (frames per device batch; larger is faster on a GPU, needs more memory)',
        elem_id=elem_id,
    )


def _selected(tab_items, state):
    for item, name in tab_items:
        item.select(lambda name=name: name, None, state, preprocess=False, queue=False)


# -- human animation -------------------------------------------------------------------------


def _human_animation(h, default_chunk, demo_media):
    gr.Markdown('## Animation\n' + _options_md(False))
    source_tab = gr.State('Image')
    driving_tab = gr.State('Video')
    with gr.Row():
        with gr.Column():
            with gr.Tabs():
                with gr.Tab('Source Image') as t_img:
                    source_image = gr.Image(
                        type='filepath',
                        label='source portrait',
                        sources=['upload', 'clipboard'],
                        elem_id='lp-source-image',
                    )
                with gr.Tab('Source Video') as t_vid:
                    source_video = gr.Video(
                        label='source video', sources=['upload'], elem_id='lp-source-video'
                    )
            _selected([(t_img, 'Image'), (t_vid, 'Video')], source_tab)
            with gr.Accordion('Cropping options for the source image or video', open=True):
                c = _controls(SOURCE_CROP_FIELDS)
        with gr.Column():
            with gr.Tabs():
                with gr.Tab('Driving Video') as d_vid:
                    driving_video = gr.Video(
                        label='driving video', sources=['upload'], elem_id='lp-driving-video'
                    )
                with gr.Tab('Driving Image') as d_img:
                    driving_image = gr.Image(
                        type='filepath',
                        label='driving image',
                        sources=['upload', 'clipboard'],
                        elem_id='lp-driving-image',
                    )
                with gr.Tab('Driving Pickle') as d_pkl:
                    driving_pickle = gr.File(
                        label='motion template (.pkl)',
                        file_types=['.pkl'],
                        elem_id='lp-driving-pickle',
                    )
                with gr.Tab('Driving Script') as d_script:
                    driving_script = gr.File(
                        label='motion script (.yaml / .json; the editor below makes one)',
                        file_types=['.yaml', '.yml', '.json'],
                        elem_id='lp-driving-script',
                    )
            _selected(
                [(d_vid, 'Video'), (d_img, 'Image'), (d_pkl, 'Pickle'), (d_script, 'Script')],
                driving_tab,
            )
            with gr.Accordion('Cropping options for the driving video', open=True):
                c.update(_controls(DRIVING_CROP_FIELDS))
    if demo_media:
        gr.Examples(
            [[demo_media[0], demo_media[1]]],
            [source_image, driving_video],
            label='Built-in demo media (scikit-image astronaut, synthesised clip)',
            cache_examples=False,
        )
    with gr.Accordion('Animation options', open=True):
        c.update(
            _controls(
                (
                    'flag_normalize_lip',
                    'flag_relative_motion',
                    'flag_pasteback',
                    'flag_stitching',
                    'animation_region',
                    'driving_option',
                    'driving_multiplier',
                    'driving_smooth_observation_variance',
                )
            )
        )
        c.update(_controls(('faces', 'motion_smoothing', 'motion_smoothing_strength')))
        chunk = _chunk_control(default_chunk, 'lp-chunk')
    button = gr.Button('Animate', variant='primary', elem_id='lp-animate-btn')
    with gr.Row():
        out_video = _out_video('The animated video in the original image space', 'lp-anim-video')
        out_concat = _out_video('The animated video (driving | source | result)', 'lp-anim-concat')
    with gr.Row():
        out_image = _out_image(
            'The animated image in the original image space', 'lp-anim-image', visible=False
        )
        out_concat_image = _out_image('The animated image', 'lp-anim-concat-image', visible=False)
    status = gr.Markdown(elem_id='lp-anim-status')
    gr.ClearButton(
        [
            source_image,
            source_video,
            driving_video,
            driving_image,
            driving_pickle,
            out_video,
            out_concat,
            out_image,
            out_concat_image,
        ],
        value='Clear',
    )

    source_image.upload(h.check_image, source_image, None, preprocess=False)
    driving_image.upload(h.check_image, driving_image, None, preprocess=False)
    for comp in (source_video, driving_video, driving_pickle, driving_script):
        comp.upload(h.check_media, comp, None, preprocess=False)
    c.update(
        source_image=source_image,
        source_video=source_video,
        driving_video=driving_video,
        driving_image=driving_image,
        driving_pickle=driving_pickle,
        driving_script=driving_script,
        chunk=chunk,
        source_tab=source_tab,
        driving_tab=driving_tab,
    )
    button.click(
        h.animate,
        _inputs(h.animate, c),
        [out_video, out_concat, out_image, out_concat_image, status],
        preprocess=False,
        show_progress='full',
        **DEVICE,
    )


# -- animal animation ------------------------------------------------------------------------


def _animal_animation(h, default_chunk, demo_media):
    gr.Markdown('## Animation (animals)\n' + _options_md(True))
    driving_tab = gr.State('Pickle')
    with gr.Row():
        with gr.Column():
            source_image = gr.Image(
                type='filepath',
                label='source animal image',
                sources=['upload', 'clipboard'],
                elem_id='lp-source-image',
            )
            with gr.Accordion('Cropping options for the source image', open=True):
                c = _controls(('flag_do_crop', 'crop_box'))
        with gr.Column():
            with gr.Tabs():
                with gr.Tab('Driving Pickle') as d_pkl:
                    driving_pickle = gr.File(
                        label='motion template (.pkl)',
                        file_types=['.pkl'],
                        elem_id='lp-driving-pickle',
                    )
                with gr.Tab('Driving Video') as d_vid:
                    driving_video = gr.Video(
                        label='driving video', sources=['upload'], elem_id='lp-driving-video'
                    )
            _selected([(d_pkl, 'Pickle'), (d_vid, 'Video')], driving_tab)
            with gr.Accordion('Cropping options for the driving video', open=True):
                c.update(_controls(DRIVING_CROP_FIELDS))
    if demo_media:
        gr.Examples(
            [[demo_media[1]]],
            [driving_video],
            label='Built-in driving clip (synthesised from the astronaut)',
            cache_examples=False,
        )
    with gr.Accordion('Animation options', open=False):
        with gr.Row():  # the reference's animal app: no stitching, no paste-back
            c.update(
                {
                    name: _control(name, False, f'{name[5:]} (not recommended)')
                    for name in ('flag_stitching', 'flag_pasteback')
                }
            )
            c['driving_multiplier'] = _control('driving_multiplier')
        chunk = _chunk_control(default_chunk, 'lp-chunk')
    button = gr.Button('Animate', variant='primary', elem_id='lp-animate-btn')
    with gr.Row():
        out_video = _out_video('The animated video in the cropped image space', 'lp-anim-video')
        out_gif = _out_image('The animated gif in the cropped image space', 'lp-anim-gif')
        out_concat = _out_video('The animated video', 'lp-anim-concat')
    status = gr.Markdown(elem_id='lp-anim-status')
    gr.ClearButton(
        [source_image, driving_video, driving_pickle, out_video, out_gif, out_concat], value='Clear'
    )
    source_image.upload(h.check_image, source_image, None, preprocess=False)
    for comp in (driving_video, driving_pickle):
        comp.upload(h.check_media, comp, None, preprocess=False)
    c.update(
        source_image=source_image,
        driving_video=driving_video,
        driving_pickle=driving_pickle,
        chunk=chunk,
        driving_tab=driving_tab,
    )
    button.click(
        h.animate_animals,
        _inputs(h.animate_animals, c),
        [out_video, out_gif, out_concat, status],
        preprocess=False,
        show_progress='full',
        **DEVICE,
    )


# -- image editing (retargeting) -------------------------------------------------------------


def _slider(s, elem_prefix='lp-slider-'):
    return gr.Slider(
        s.minimum,
        s.maximum,
        value=s.neutral,
        step=s.step,
        label=s.label,
        elem_id=elem_prefix + s.name,
    )


def _image_editing(h, demo_media):
    gr.Markdown(
        '## Portrait editing (image retargeting)\nUpload a portrait; the eyes-open and '
        'lip-open sliders start at its own ratios. Move a slider (or press **Retarget '
        'image**) to render.'
    )
    lo, hi, step = editing.RATIO_RANGE
    with gr.Row():
        do_crop, stitching = _control('flag_do_crop'), _control('flag_stitching')
        scale = _control('scale', editing.EDIT_SOURCE_SCALE)
        eye = gr.Slider(
            lo, hi, value=0.0, step=step, label='target eyes-open ratio', elem_id='lp-eye-ratio'
        )
        lip = gr.Slider(
            lo, hi, value=0.0, step=step, label='target lip-open ratio', elem_id='lp-lip-ratio'
        )
    sliders = {}
    with gr.Row():
        with gr.Column():
            with gr.Accordion('Facial movement sliders', open=True):
                for group in (editing.POSE_SLIDERS[:3], editing.POSE_SLIDERS[3:]):
                    with gr.Row():
                        for s in group:
                            sliders[s.name] = _slider(s)
        with gr.Column():
            with gr.Accordion('Facial expression sliders', open=True):
                ex = editing.EXPRESSION_SLIDERS
                for group in (ex[0:3], ex[3:6], ex[6:9]):
                    with gr.Row():
                        for s in group:
                            sliders[s.name] = _slider(s)
    ordered = [sliders[n] for n in editing.SLIDER_NAMES]
    with gr.Row():
        reset = gr.Button('Reset sliders')
        button = gr.Button('Retarget image', variant='primary', elem_id='lp-edit-btn')
    with gr.Row():
        with gr.Column():
            image = gr.Image(
                type='filepath',
                label='Retargeting image input',
                sources=['upload', 'clipboard'],
                elem_id='lp-edit-image',
            )
            if demo_media:
                gr.Examples(
                    [[demo_media[0]]], [image], label='Built-in portrait', cache_examples=False
                )
        with gr.Column():
            out_crop = _out_image('Retargeting result', 'lp-edit-crop', type='numpy')
        with gr.Column():
            out_pasted = _out_image('Paste-back result', 'lp-edit-pasted', type='numpy')
    gr.ClearButton([image, out_crop, out_pasted], value='Clear')
    with gr.Accordion('Motion script: save the sliders as keyframes', open=False):
        gr.Markdown(
            'Set the sliders, choose a time and press **Add keyframe**; the script drives an '
            'animation (Driving Script tab above, or `animate -d script.yaml`). README: '
            '"Motion scripts".'
        )
        with gr.Row():
            key_time = gr.Number(0.0, minimum=0.0, label='keyframe time (s)', elem_id='lp-key-time')
            key_duration = gr.Number(3.0, minimum=0.04, label='script duration (s)')
            key_fps = gr.Number(25.0, minimum=1.0, label='fps')
            add_key = gr.Button('Add keyframe', elem_id='lp-add-key')
        with gr.Row():
            script_text = gr.Code('', language='yaml', label='script', elem_id='lp-script-text')
            script_file = gr.File(label='download the script', elem_id='lp-script-file')
    add_key.click(
        h.add_keyframe,
        [script_text, key_time, key_duration, key_fps, image, scale, do_crop, eye, lip] + ordered,
        [script_text, script_file],
        preprocess=False,
        **DEVICE,
    )

    inputs = [eye, lip] + ordered + [image, scale, stitching, do_crop]
    image.change(
        h.init_edit, [image, scale, do_crop, eye, lip], [eye, lip], preprocess=False, **DEVICE
    )
    button.click(h.edit, inputs, [out_crop, out_pasted], preprocess=False, **DEVICE)
    for s in [eye, lip] + ordered:
        s.release(h.edit, inputs, [out_crop, out_pasted], preprocess=False, **DEVICE)
    reset.click(
        neutral_slider_values,
        None,
        ordered + [scale, stitching, do_crop],
        preprocess=False,
        queue=False,
    )


# -- video lip retargeting -------------------------------------------------------------------


def _video_retargeting(h, default_chunk, demo_media):
    gr.Markdown(
        '## Video lip retargeting\nSets the lip-open ratio of every frame of a source '
        'video (smoothed over time), or keeps the lips silent.'
    )
    lo, hi, step = editing.RATIO_RANGE
    with gr.Row():
        do_crop, scale = _control('flag_do_crop'), _control('scale', editing.VIDEO_SOURCE_SCALE)
        lip = gr.Slider(
            lo,
            hi,
            value=0.0,
            step=step,
            label='target lip-open ratio',
            elem_id='lp-video-lip-ratio',
        )
        smooth = _control(
            'driving_smooth_observation_variance',
            editing.VIDEO_SMOOTH_VARIANCE,
            'motion smooth strength',
        )
        silence = gr.Checkbox(False, label='keeping the lip silent')
    chunk = _chunk_control(default_chunk, 'lp-video-chunk')
    button = gr.Button('Retarget video', variant='primary', elem_id='lp-retarget-btn')
    with gr.Row():
        with gr.Column():
            video = gr.Video(
                label='Retargeting video input', sources=['upload'], elem_id='lp-retarget-video'
            )
            if demo_media:
                gr.Examples([[demo_media[1]]], [video], label='Built-in clip', cache_examples=False)
        with gr.Column():
            out_concat = _out_video('Retargeting result (source | result)', 'lp-retarget-concat')
        with gr.Column():
            out_video = _out_video('Paste-back result', 'lp-retarget-output')
    gr.ClearButton([lip, video, out_concat, out_video], value='Clear')
    video.upload(h.check_media, video, None, preprocess=False)
    button.click(
        h.retarget_video,
        [lip, video, scale, smooth, silence, do_crop, chunk],
        [out_concat, out_video],
        preprocess=False,
        show_progress='full',
        **DEVICE,
    )
