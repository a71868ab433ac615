"""`liveportrait-jax prepare-data`: face videos -> training shards (crops, landmarks, eye/lip
ratios, region masks, frozen M outputs); resumable."""

import logging

log = logging.getLogger('liveportrait_jax')


def add_parser(sub):
    from liveportrait_jax.pipeline.options import number_flag

    p = sub.add_parser(
        'prepare-data',
        help='prepare face videos for fine-tuning (resumable)',
        description='Turn a folder of face videos into training shards: 256 crops, MediaPipe '
        'landmarks, eye/lip ratios, region masks and the frozen M outputs per frame. '
        'Resumable; videos without a usable face are skipped and listed.',
    )
    p.add_argument('videos', help='folder of face videos')
    p.add_argument('out', help='output folder (shards/ and manifest.json)')
    p.add_argument(
        '--weights',
        default='weights',
        metavar='DIR',
        help='converted weights (liveportrait-jax convert); default: weights',
    )
    p.add_argument(
        '--random-weights',
        choices=('tiny', 'full'),
        metavar='CONFIG',
        help='use RANDOM model weights of this config (tiny or full) instead: for '
        'tests and dry runs only',
    )
    p.add_argument(
        '--frame-stride',
        type=number_flag('--frame-stride'),
        default=2,
        help='keep every N-th frame of each video (default 2)',
    )
    p.add_argument(
        '--max-frames',
        type=number_flag('--max-frames'),
        default=120,
        help='frames kept per video, after the stride (default 120)',
    )
    p.set_defaults(func=run)
    return p


def run(args):
    from liveportrait_jax import distributed

    # Before anything starts JAX (the models): several processes split the videos.
    index, count = distributed.initialize()
    from liveportrait_jax.demo import load_models_or_demo
    from liveportrait_jax.training.data import prepare_data

    models = load_models_or_demo(
        args.weights, demo=bool(args.random_weights), demo_config=args.random_weights or 'tiny'
    )
    manifest = prepare_data(
        models, args.videos, args.out, frame_stride=args.frame_stride, max_frames=args.max_frames,
        process_index=index, process_count=count, log=log.info,
    )  # fmt: skip
    log.info(
        '%d videos, %d frames prepared; %d skipped',
        len(manifest['videos']),
        manifest['total_frames'],
        len(manifest['skipped']),
    )
    for name, why in manifest['skipped'].items():
        log.info('  skipped %s: %s', name, why)
    return 0
