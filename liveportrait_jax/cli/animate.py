"""`liveportrait-jax animate`: argument parsing and the run, over liveportrait_jax.pipeline."""

import logging
import os

from liveportrait_jax.cli.common import add_model_arguments, models_from_args
from liveportrait_jax.pipeline.options import (
    add_option_arguments,
    number_flag,
    options_from_args,
)

log = logging.getLogger('liveportrait_jax')


def add_parser(sub):
    p = sub.add_parser(
        'animate',
        help='animate a portrait with a driving video, image or template',
        description='Animate a source portrait (image or video) with a driving video, driving '
        'image or motion template (.pkl). Writes <source>--<driving>.mp4, a '
        '_concat.mp4 comparison (driving | source | result) and the driving motion as '
        '<driving>.pkl to OUTDIR.',
    )
    p.add_argument(
        '-s',
        '--source',
        help='source portrait image or video (default: built-in '
        'demo media, the scikit-image astronaut)',
    )
    p.add_argument(
        '-d',
        '--driving',
        action='append',
        help='driving video, image or motion template (.pkl) '
        '(default: a clip synthesised from the astronaut); with --faces, repeat it to give each '
        'face its own driving input, in the order of the faces',
    )
    p.add_argument(
        '--motion-script',
        metavar='SCRIPT',
        help='a motion script (.yaml / .json: keyframed head pose and expression edits, README '
        '"Motion scripts") applied on top of the driving motion; a script can also be -d itself',
    )
    p.add_argument(
        '-o',
        '--output-dir',
        default='animations',
        metavar='OUTDIR',
        help='output directory (default: animations)',
    )
    add_model_arguments(p, 'every frame')
    p.add_argument(
        '--chunk',
        type=number_flag('--chunk'),
        default=8,
        help='frames per device batch (default 8)',
    )
    p.add_argument(
        '--max-frames',
        type=number_flag('--max-frames'),
        default=None,
        metavar='N',
        help='use at most the first N frames of each input that has frames (the driving video, '
        'template or motion script, and the source when it is a video); default: all',
    )
    p.add_argument(
        '--max-template-frames',
        type=number_flag('--max-template-frames'),
        default=None,
        metavar='N',
        help='refuse a motion template (.pkl) with more than N frames (default: '
        'io.templates.DEFAULT_MAX_TEMPLATE_FRAMES, one hour at 30 fps; 0: no limit)',
    )
    p.add_argument(
        '--workers',
        type=number_flag('--workers'),
        default=None,
        metavar='N',
        help='face-landmark threads (default: one per core but one, at most 8)',
    )
    p.add_argument(
        '--lip-array',
        metavar='FILE',
        help="neutral-lip expression (.npy of 63 values, or the reference's "
        'lip_array.pkl) for image-driven relative motion',
    )
    p.add_argument(
        '--stitching-weights',
        metavar='PTH',
        help='a stitching_retargeting_module.pth (e.g. fine-tuned) replacing S',
    )
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
    new_dirs = _missing_dirs(args.output_dir)
    try:
        return _run(args)
    except BaseException:
        # A failed run (no face, a bad input, a stop) leaves no empty folder it made itself;
        # folders that were there before, and anything written into them, stay.
        for path in new_dirs:
            try:
                os.rmdir(path)
            except OSError:  # not empty (or gone): neither it nor its parents are ours to drop
                break
        raise


def _missing_dirs(path):
    """The folders of `path` that do not exist yet, deepest first."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def _run(args):
    from liveportrait_jax.api import with_stitching_weights
    from liveportrait_jax.pipeline import animate

    if (args.source is None) != (args.driving is None):
        raise ValueError('give both -s SOURCE and -d DRIVING, or neither (built-in demo media)')
    builtin_media = args.source is None
    if not builtin_media:  # a missing or unknown input is named before any weights are looked for
        from liveportrait_jax.pipeline.read import kind_of

        for path in (args.source, *args.driving, args.motion_script):
            if path is not None:
                kind_of(path)
    lip_array = _load_lip_array(args.lip_array) if args.lip_array else None
    overrides = {}
    if args.animals and args.flag_stitching is None:
        overrides['flag_stitching'] = False  # the reference disables stitching for animals
    options = options_from_args(args, **overrides)
    # Built-in media with no weights is the README's first command: it falls back to the demo.
    models = models_from_args(args, fallback=builtin_media)
    if builtin_media:
        from liveportrait_jax.pipeline.demo_media import write_demo_inputs

        args.source, driving = write_demo_inputs(os.path.join(args.output_dir, 'demo_inputs'))
        args.driving = [driving]
        log.info(
            'inputs: scikit-image astronaut (public domain) and a driving clip synthesised from it'
        )
    if args.stitching_weights:
        models = with_stitching_weights(models, args.stitching_weights)
    log.info('models: %r', models)
    from liveportrait_jax.io.templates import DEFAULT_MAX_TEMPLATE_FRAMES

    limit = args.max_template_frames
    limit = DEFAULT_MAX_TEMPLATE_FRAMES if limit is None else (limit or None)
    result = animate(
        models,
        args.source,
        args.driving if len(args.driving) > 1 else args.driving[0],
        args.output_dir,
        options,
        chunk=args.chunk,
        lip_array=lip_array,
        animals=args.animals,
        progress=not args.quiet,
        max_frames=args.max_frames,
        max_template_frames=limit,
        workers=args.workers,
        motion_script=args.motion_script,
    )
    log.info('animated %d frames at %.2f fps', result.n_frames, result.fps)
    for name, path in (
        ('output', result.output),
        ('comparison', result.concat),
        ('motion template', result.template),
        ('gif', result.gif),
    ):
        if path:
            log.info('  %-16s %s', name, path)
    log.info('timings (s):')
    for stage, seconds in result.timings.items():
        log.info('  %-36s %8.2f', stage, seconds)
    if result.n_frames:
        log.info(
            '  %-36s %8.1f ms',
            'per frame (total / frames)',
            1000 * result.timings['total'] / result.n_frames,
        )
    return 0
