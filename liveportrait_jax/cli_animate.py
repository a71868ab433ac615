"""`liveportrait-jax animate`: argument parsing and the run, over liveportrait_jax.pipeline."""

import argparse
import dataclasses
import logging
import os
import typing

from liveportrait_jax.pipeline.options import AnimateOptions

log = logging.getLogger('liveportrait_jax')

_HELP = {
    'flag_relative_motion': 'relative motion (driving motion relative to its first frame)',
    'driving_option': 'expression-friendly rescales motion to the source face; pose-friendly not',
    'driving_multiplier': 'scale of the final motion around the source keypoints',
    'animation_region': 'which part moves: exp, pose, lip, eyes or all',
    'flag_stitching': 'stitching module (keeps the pasted-back face aligned)',
    'flag_eye_retargeting': 'transfer the driving eye openness with the eye retargeting module',
    'flag_lip_retargeting': 'transfer the driving lip openness with the lip retargeting module',
    'eyes_retargeting_multiplier': 'scale of the eye retargeting offsets (ComfyUI)',
    'lip_retargeting_multiplier': 'scale of the lip retargeting offsets (ComfyUI)',
    'flag_normalize_lip': 'close the source lips before animating (ComfyUI lip_zero)',
    'flag_source_video_eye_retargeting': 'video source: hold the eye openness of its first frame',
    'driving_smooth_observation_variance': 'video source: Kalman smoothing strength',
    'flag_do_crop': 'crop the source to the face', 'flag_pasteback': 'paste the face back',
    'flag_crop_driving_video': 'crop the driving video (always done for non-square videos)',
    'dsize': 'crop size in pixels', 'scale': 'source crop scale (larger: smaller face)',
    'crop_box': 'explicit source crop box x0,y0,x1,y1 (any animal)',
    'face_index': 'which face when there are several (0 = largest)',
}


def _parse_box(text):
    try:
        box = tuple(float(v) for v in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected x0,y0,x1,y1, got {text!r}') from None
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise argparse.ArgumentTypeError(f'expected x0,y0,x1,y1 with x1>x0 and y1>y0, got {text!r}')
    return box


def add_option_arguments(parser):
    """One flag per AnimateOptions field, named as in the reference (--flag-stitching, ...)."""
    group = parser.add_argument_group('inference options (reference names and defaults)')
    hints = typing.get_type_hints(AnimateOptions)
    for field in dataclasses.fields(AnimateOptions):
        flag = '--' + field.name.replace('_', '-')
        help_text = _HELP.get(field.name, '') + f' (default: {field.default})'
        hint = hints[field.name]
        if hint is bool:
            group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                               default=None, help=help_text)
        elif typing.get_origin(hint) is typing.Literal:
            group.add_argument(flag, dest=field.name, choices=typing.get_args(hint), default=None,
                               help=help_text)
        elif field.name == 'crop_box':
            group.add_argument(flag, dest=field.name, type=_parse_box, default=None,
                               metavar='X0,Y0,X1,Y1', help=help_text)
        else:
            group.add_argument(flag, dest=field.name, type=type(field.default), default=None,
                               help=help_text)


def options_from_args(args, **overrides):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(AnimateOptions)
              if getattr(args, f.name, None) is not None}
    values.update(overrides)
    return AnimateOptions(**values)


def add_parser(sub):
    p = sub.add_parser(
        'animate', help='animate a portrait with a driving video, image or template',
        description='Animate a source portrait (image or video) with a driving video, driving '
                    'image or motion template (.pkl). Writes <source>--<driving>.mp4, a '
                    '_concat.mp4 comparison (driving | source | result) and the driving motion as '
                    '<driving>.pkl to OUTDIR.')
    p.add_argument('-s', '--source', help='source portrait image or video (default: built-in '
                   'demo media, the scikit-image astronaut)')
    p.add_argument('-d', '--driving', help='driving video, image or motion template (.pkl) '
                   '(default: a clip synthesised from the astronaut)')
    p.add_argument('-o', '--output-dir', default='animations', metavar='OUTDIR',
                   help='output directory (default: animations)')
    p.add_argument('--weights', default='weights', metavar='DIR',
                   help='converted weights (liveportrait-jax convert); default: weights')
    p.add_argument('--animals', action='store_true',
                   help='animal mode: the animals model set and a cat-face (or --crop-box) crop')
    p.add_argument('--demo', action='store_true',
                   help='use RANDOM weights (labelled in every frame); also the fallback when '
                        'no -s/-d are given and no converted weights are found')
    p.add_argument('--config', default='tiny', choices=('tiny', 'full'),
                   help='model config of the random demo weights (default: tiny, fast)')
    p.add_argument('--chunk', type=int, default=8, help='frames per device batch (default 8)')
    p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16', 'float16'),
                   help='compute dtype of the convolutions (default float32)')
    p.add_argument('--max-frames', type=int, default=None, help='read at most N video frames')
    p.add_argument('--lip-array', metavar='FILE',
                   help="neutral-lip expression (.npy of 63 values, or the reference's "
                        'lip_array.pkl) for image-driven relative motion')
    p.add_argument('--stitching-weights', metavar='PTH',
                   help='a stitching_retargeting_module.pth (e.g. fine-tuned) replacing S')
    p.add_argument('--gif', dest='flag_write_gif', action='store_true', default=None,
                   help='also write a gif')
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    add_option_arguments(p)
    p.set_defaults(func=run)
    return p


def _load_lip_array(path):
    import numpy as np
    from liveportrait_jax.io import InputError, safe_load
    if path.endswith('.npy'):
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(f'{path!r}: cannot read the lip array ({e})') from None
    else:
        arr = np.asarray(safe_load(path))
    if arr.size != 63:
        raise InputError(f'{path!r}: a lip array has 63 values (21 x 3), found shape {arr.shape}')
    return arr.reshape(21, 3).astype('float32')


def run(args):
    import jax.numpy as jnp
    import liveportrait_jax as lp
    from liveportrait_jax.pipeline import animate
    from liveportrait_jax.cli_logging import setup_logging
    setup_logging()
    dtype = jnp.dtype(args.dtype)
    overrides = {}
    if args.animals and args.flag_stitching is None:
        overrides['flag_stitching'] = False  # the reference disables stitching for animals
    options = options_from_args(args, **overrides)
    builtin_media = not (args.source or args.driving)
    if (args.source is None) != (args.driving is None):
        raise ValueError('give both -s SOURCE and -d DRIVING, or neither (built-in demo media)')
    demo = args.demo
    if not demo and builtin_media:
        from liveportrait_jax.weights.checkpoint import CheckpointError, resolve_model_set
        try:
            resolve_model_set(args.weights, 'animals' if args.animals else 'human')
        except CheckpointError as e:
            log.warning('%s\nNo weights: falling back to the demo (random weights).', e)
            demo = True
    if demo:
        log.warning('=' * 72)
        log.warning('DEMO MODE: RANDOM WEIGHTS (config %r). The output is noise, not an '
                    'animation;\nit is labelled as such in every frame. For real results convert '
                    'the released\nweights (README, "Weights") and run without --demo.', args.config)
        log.warning('=' * 72)
        models = lp.init_random_models(args.config, seed=0, dtype=dtype)
    else:
        models = lp.load_models(args.weights, dtype=dtype,
                                variant='animals' if args.animals else 'human')
    if builtin_media:
        from liveportrait_jax.pipeline.demo import write_demo_inputs
        args.source, args.driving = write_demo_inputs(os.path.join(args.output_dir, 'demo_inputs'))
        log.info('inputs: scikit-image astronaut (public domain) and a driving clip synthesised '
                 'from it')
    if args.stitching_weights:
        from liveportrait_jax.weights.checkpoint import replace_stitching_module
        models = replace_stitching_module(models, args.stitching_weights)
    lip_array = _load_lip_array(args.lip_array) if args.lip_array else None
    log.info('models: %r', models)
    result = animate(models, args.source, args.driving, args.output_dir, options,
                     chunk=args.chunk, lip_array=lip_array, animals=args.animals,
                     progress=not args.quiet, max_frames=args.max_frames)
    log.info('animated %d frames at %.2f fps', result.n_frames, result.fps)
    for name, path in (('output', result.output), ('comparison', result.concat),
                       ('motion template', result.template), ('gif', result.gif)):
        if path:
            log.info('  %-16s %s', name, path)
    log.info('timings (s):')
    for stage, seconds in result.timings.items():
        log.info('  %-36s %8.2f', stage, seconds)
    if result.n_frames:
        log.info('  %-36s %8.1f ms', 'per frame (total / frames)',
                 1000 * result.timings['total'] / result.n_frames)
    return 0
