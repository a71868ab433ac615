"""The web app (liveportrait_jax.app) in a real headless Chromium, on tiny random weights.

The browser test needs Chromium at /usr/bin/chromium (Debian package `chromium`) and Playwright's
Python package (no `playwright install`: the system browser is used); it is skipped, saying
which is missing, without them. The other tests here only need Gradio.

The browser is confined to the app: every request to another host is aborted and recorded, and the
test asserts there were none (the page must work offline).
"""

import base64
import os
import shutil
import socket
import time

import numpy as np
import pytest

gr = pytest.importorskip('gradio', reason='the web app needs gradio (pip install gradio)')

import liveportrait_jax as lp  # noqa: E402
from liveportrait_jax.io import VideoWriter, load_image, load_video_frames, save_image  # noqa: E402
from liveportrait_jax.pipeline.demo_media import astronaut, synth_driving_frames  # noqa: E402

CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
]
SCREENSHOT_COPY = '/tmp/liveportrait_app_screenshot.png'
WORK_TIMEOUT_MS = 300_000  # compiling the tiny networks on 2 CPU cores takes ~30 s a stage


@pytest.fixture(scope='module')
def models():
    return lp.init_random_models('tiny', seed=0)


@pytest.fixture(scope='module')
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp('app_media')
    src = str(d / 'astronaut.png')
    save_image(src, astronaut())
    drv = str(d / 'driving.mp4')
    with VideoWriter(drv, 8) as w:
        for f in synth_driving_frames(4):
            w.write(f)
    bad = d / 'bad.png'
    bad.write_text('this is a text file, not a PNG\n')
    return {'source': src, 'driving': drv, 'bad': str(bad)}


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# --- without a browser ----------------------------------------------------------------------------


def test_build_app_human_and_animals(models, tmp_path):
    from liveportrait_jax.app import RANDOM_BANNER, build_app

    app = build_app(models, output_dir=str(tmp_path / 'h'), examples=False)
    ids = {getattr(b, 'elem_id', None) for b in app.blocks.values()}
    for elem in (
        'lp-banner',
        'lp-source-image',
        'lp-source-video',
        'lp-driving-video',
        'lp-driving-image',
        'lp-driving-pickle',
        'lp-animate-btn',
        'lp-chunk',
        'lp-anim-video',
        'lp-edit-image',
        'lp-edit-btn',
        'lp-slider-smile',
        'lp-slider-eyeball_direction_y',
        'lp-eye-ratio',
        'lp-lip-ratio',
        'lp-retarget-video',
        'lp-retarget-btn',
        'lp-video-chunk',
    ):
        assert elem in ids, elem
    assert 'RANDOM WEIGHTS' in RANDOM_BANNER
    animals = build_app(models, animals=True, output_dir=str(tmp_path / 'a'), examples=False)
    ids = {getattr(b, 'elem_id', None) for b in animals.blocks.values()}
    assert {'lp-source-image', 'lp-driving-pickle', 'lp-anim-gif', 'lp-chunk'} <= ids
    assert 'lp-edit-image' not in ids  # the reference's animal app has no retargeting panels


def test_handlers_report_input_errors(models, media, tmp_path):
    from liveportrait_jax.app.handlers import AppHandlers, payload_path

    h = AppHandlers(models, str(tmp_path))
    with pytest.raises(gr.Error, match=r"'bad.png': not a readable image"):
        h.check_image({'path': media['bad']})
    no_progress = lambda *a, **k: None  # noqa: E731
    # The page's inputs in order: media (5), options, crop rows, smoothing, chunk, kinds.
    inputs = [None] * 5 + [False, True, True, True, True, 'all', 'expression-friendly', 1.0, False]
    inputs += [2.3, 0.0, -0.125, 2.2, 0.0, -0.1, 3e-7, 8, 'Image', 'Video']
    with pytest.raises(gr.Error, match='Please upload'):
        h.animate(*inputs, progress=no_progress)
    # The option values are checked against the AnimateOptions schema, naming the field.
    bad_scale = inputs[:14] + [9] + inputs[15:]
    with pytest.raises(gr.Error, match=r'scale must be in \[1.0, 4.0\], got 9.0'):
        h.animate(*bad_scale, progress=no_progress)

    # The animal page's inputs in order, with the crop box as the one value that changes.
    def animals(box):
        return [None] * 3 + [True, False, 1.0, False, False, box, 2.2, 0.0, -0.1, 8, 'Pickle']

    with pytest.raises(gr.Error, match='crop_box must be x0,y0,x1,y1'):
        h.animate_animals(*animals('1,2,3'), progress=no_progress)
    with pytest.raises(gr.Error, match='Please upload'):
        h.animate_animals(*animals(' 10, 20, 110, 140 '), progress=no_progress)
    assert payload_path({'video': {'path': '/x/a.mp4'}, 'subtitles': None}) == '/x/a.mp4'
    assert payload_path({'path': '/x/b.png', 'url': 'http://h/b.png'}) == '/x/b.png'
    assert payload_path(None) is None


def test_option_controls_come_from_the_schema(models, tmp_path):
    from liveportrait_jax.app import build_app
    from liveportrait_jax.pipeline.options import SCHEMA

    app = build_app(models, output_dir=str(tmp_path), examples=False)
    controls = {}  # label -> the first control with it (the animation panel's)
    for block in app.blocks.values():
        if getattr(block, 'info', None):
            controls.setdefault(block.label, block)
    for name in (
        'flag_do_crop',
        'scale',
        'vy_ratio',
        'scale_crop_driving_video',
        'animation_region',
        'driving_multiplier',
        'driving_smooth_observation_variance',
    ):
        field = SCHEMA[name]
        control = controls[name.removeprefix('flag_').replace('_', ' ')]
        assert control.info == field.metadata['help'] and control.value == field.default, name
        if field.metadata['min'] is not None:
            assert (control.minimum, control.maximum, control.step) == tuple(
                field.metadata[k] for k in ('min', 'max', 'step')
            ), name
    assert controls['animation region'].choices == [
        (c, c) for c in SCHEMA['animation_region'].metadata['choices']
    ]


def test_load_app_models_falls_back_to_random(tmp_path):
    from liveportrait_jax.app import load_app_models

    m = load_app_models(str(tmp_path / 'no_weights_here'), config='tiny')
    assert m.random_weights


def test_cli_app_arguments():
    import argparse

    from liveportrait_jax.cli import app as cli_app

    parser = argparse.ArgumentParser()
    cli_app.add_parser(parser.add_subparsers(dest='command'))
    args = parser.parse_args(['app'])
    assert (args.host, args.port, args.weights, args.config, args.animals) == (
        '127.0.0.1',
        7860,
        'weights',
        'tiny',
        False,
    )
    args = parser.parse_args(
        [
            'app',
            '--animals',
            '--weights',
            'w',
            '--host',
            '0.0.0.0',
            '--port',
            '8000',
            '--config',
            'full',
        ]
    )
    assert (args.animals, args.weights, args.host, args.port, args.config) == (
        True,
        'w',
        '0.0.0.0',
        8000,
        'full',
    )
    assert args.func is cli_app.run


# --- in Chromium ----------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f'{CHROMIUM} not found (Debian: apt-get install -y chromium)')
    sync_api = pytest.importorskip(
        'playwright.sync_api', reason='playwright is not installed (pip install playwright)'
    )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope='module')
def served(models, tmp_path_factory):
    from liveportrait_jax.app import build_app, launch_app

    out = tmp_path_factory.mktemp('app_out')
    app = build_app(models, output_dir=str(out), examples=False)
    _, url = launch_app(app, host='127.0.0.1', port=_free_port(), block=False, quiet=True)
    try:
        yield url
    finally:
        app.close()


def _video_duration_js(elem_id):
    return (
        f"() => {{ const v = document.querySelector('#{elem_id} video');"
        f' return v !== null && v.duration > 0; }}'
    )


def _image_loaded_js(elem_id):
    return (
        f"() => {{ const i = document.querySelector('#{elem_id} img');"
        f' return i !== null && i.complete && i.naturalWidth > 0; }}'
    )


# The bytes of a media element's source as the page has it (http, blob: or data: URL), base64.
FETCH_SRC_JS = """async (sel) => {
  const el = document.querySelector(sel);
  const r = await fetch(el.currentSrc || el.src);
  const b = new Uint8Array(await r.arrayBuffer());
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}"""


def _fetch_src(page, selector, path):
    """Saves what the page shows in `selector` (a video or img element) to `path`."""
    path.write_bytes(base64.b64decode(page.evaluate(FETCH_SRC_JS, selector)))
    return str(path)


# The astronaut's face: roughly x 150..330, y 40..230 of the 512x512 image (demo_media).
FACE = (slice(40, 230), slice(150, 330))


def _set_number(page, elem_id, value):
    box = page.locator(f'#{elem_id} input[type=number]')
    box.fill(str(value))
    box.press('Enter')


def test_app_in_chromium(browser, served, media, tmp_path):
    external, page_errors = [], []
    page = browser.new_page(viewport={'width': 1400, 'height': 1000})

    def confine(route):
        url = route.request.url
        if url.startswith(served) or url.startswith(('data:', 'blob:')):
            route.continue_()
        else:
            external.append(url)
            route.abort()

    page.route('**/*', confine)
    page.on('pageerror', lambda e: page_errors.append(str(e)))
    page.goto(served)
    page.get_by_text('RANDOM WEIGHTS').first.wait_for(timeout=60_000)

    # 1. a bad upload: a text file named .png -> our reader's message in an error toast
    page.locator('#lp-source-image input[type=file]').set_input_files(media['bad'])
    page.get_by_text("'bad.png': not a readable image").first.wait_for(timeout=60_000)
    page.screenshot(path=str(tmp_path / 'app_error.png'), full_page=True)
    page.reload()
    page.get_by_text('RANDOM WEIGHTS').first.wait_for(timeout=60_000)

    # 2. animation: source image + driving video, chunk size 4 -> a playable result video
    page.locator('#lp-source-image input[type=file]').set_input_files(media['source'])
    page.locator('#lp-driving-video input[type=file]').set_input_files(media['driving'])
    page.locator('#lp-driving-video video').wait_for(state='attached', timeout=60_000)
    _set_number(page, 'lp-chunk', 4)
    assert page.locator('#lp-chunk input[type=range]').input_value() == '4'
    t = time.perf_counter()
    page.locator('#lp-animate-btn').click()
    page.wait_for_function(_video_duration_js('lp-anim-video'), timeout=WORK_TIMEOUT_MS)
    duration = page.evaluate("document.querySelector('#lp-anim-video video').duration")
    assert duration > 0
    assert '4 frame(s)' in page.locator('#lp-anim-status').inner_text()
    print(f'animation: {time.perf_counter() - t:.1f} s, video duration {duration:.2f} s')
    # What came back: 4 frames in the source's space, the face animated (random weights: noise).
    video = _fetch_src(page, '#lp-anim-video video', tmp_path / 'animated.mp4')
    frames = np.stack(load_video_frames(video))
    source = load_image(media['source'])
    assert frames.shape == (4,) + source.shape, frames.shape
    for f in frames:
        face_diff = np.abs(f[FACE].astype(np.int16) - source[FACE]).mean()
        assert face_diff > 20, face_diff

    # 3. portrait editing: upload, move the smile slider, retarget -> result images
    page.locator('#lp-edit-image input[type=file]').set_input_files(media['source'])
    # the eye/lip sliders start at the portrait's own ratios once it is analysed
    page.wait_for_function(
        "() => Number(document.querySelector('#lp-eye-ratio input[type=number]').value) > 0",
        timeout=WORK_TIMEOUT_MS,
    )
    _set_number(page, 'lp-slider-smile', 0.5)
    t = time.perf_counter()
    page.locator('#lp-edit-btn').click()
    page.wait_for_function(_image_loaded_js('lp-edit-crop'), timeout=WORK_TIMEOUT_MS)
    page.wait_for_function(_image_loaded_js('lp-edit-pasted'), timeout=WORK_TIMEOUT_MS)
    print(f'editing: {time.perf_counter() - t:.1f} s')
    # What came back: the portrait changed in the face (what the edit renders) and nowhere far
    # from it (paste-back keeps the rest of the photo).
    pasted = load_image(_fetch_src(page, '#lp-edit-pasted img', tmp_path / 'pasted.png'))
    assert pasted.shape == source.shape, pasted.shape
    diff = np.abs(pasted.astype(np.int16) - source)
    assert diff[FACE].mean() > 20, diff[FACE].mean()
    # (the editor's wide crop, scale 2.5, reaches x 0..341, y 0..220 of this photo)
    outside = max(diff[300:].max(), diff[:, 400:].max())
    assert outside <= 1, outside
    crop = load_image(_fetch_src(page, '#lp-edit-crop img', tmp_path / 'crop.png'))
    assert crop.shape == (512, 512, 3), crop.shape

    # settle: no progress bar left anywhere, then let the images' fade-in finish
    page.wait_for_function(
        "() => document.querySelectorAll('.eta-bar').length === 0", timeout=WORK_TIMEOUT_MS
    )
    page.wait_for_timeout(1500)
    shot = tmp_path / 'app.png'
    page.screenshot(path=str(shot), full_page=True)
    try:
        shutil.copyfile(shot, SCREENSHOT_COPY)
    except OSError:
        pass
    page.close()
    assert not external, f'the page tried to reach other hosts: {external}'
    assert not page_errors, f'JavaScript errors on the page: {page_errors}'


def test_editor_keyframes_and_script_driving(models, media, tmp_path):
    """The editor's "Add keyframe" writes a script the animation tab can be driven by (the
    keyframed turn is in the frames); the animation tab's faces and smoothing controls reach
    the pipeline (a wrong face count is refused; smoothing changes the animated frames)."""
    from liveportrait_jax.app.handlers import AppHandlers
    from liveportrait_jax.pipeline import editing
    from liveportrait_jax.pipeline.motion_script import load_script

    h = AppHandlers(models, str(tmp_path))
    image = {'path': media['source']}
    neutral = [s.neutral for s in editing.SLIDERS]
    text, path = h.add_keyframe('', 0.0, 0.5, 8, image, 2.5, True, None, None, *neutral)
    turned = list(neutral)
    turned[editing.SLIDER_NAMES.index('head_yaw')] = 10.0
    text, path = h.add_keyframe(text, 0.4, 0.5, 8, image, 2.5, True, None, None, *turned)
    script = load_script(path)
    assert script.n_frames == 4 and 'yaw: 10' in text
    assert script.sliders(0) == editing.EditSliders()
    with pytest.raises(gr.Error, match='within the duration'):
        h.add_keyframe(text, 9.0, 0.5, 8, image, 2.5, True, None, None, *neutral)
    no_progress = lambda *a, **k: None  # noqa: E731
    inputs = [{'path': media['source']}, None, None, None, None]
    inputs += [False, True, True, True, True, 'all', 'expression-friendly', 1.0, False]
    inputs += [2.3, 0.0, -0.125, 2.2, 0.0, -0.1, 3e-7, 4, 'Image', 'Script']
    out = h.animate(*inputs, '', 'none', 1.0, {'path': path}, progress=no_progress)
    assert out[0]['value'].endswith('--editor_script.mp4')
    scripted = np.stack(load_video_frames(out[0]['value']))
    assert len(scripted) == 4
    # Frame 0 is the neutral keyframe (the source re-rendered), the last (0.375 s) nearly the
    # 10-degree turn keyed at 0.4 s: the script's motion is in the frames.
    turn = np.abs(scripted[-1].astype(np.int16) - scripted[0]).mean()
    assert turn > 1.0, turn
    with pytest.raises(gr.Error, match="faces must be 'all'"):
        h.animate(*inputs, 'two', 'none', 1.0, {'path': path}, progress=no_progress)
    # Smoothing acts on a driving video's motion: the same inputs with and without it.
    inputs[2] = {'path': media['driving']}
    inputs[-1] = 'Video'

    def frames(smoothing):
        out = h.animate(*inputs, '', smoothing, 1.0, None, progress=no_progress)
        return np.stack(load_video_frames(out[0]['value']))

    plain, steady = frames('none'), frames('kalman')
    assert plain.shape == steady.shape == (4, 512, 512, 3)
    smoothed = np.abs(plain.astype(np.int16) - steady).mean()
    assert smoothed > 0.5, smoothed
