"""`liveportrait-jax app`: the Gradio web app (liveportrait_jax.app), served locally."""

import logging
import sys

from liveportrait_jax import stopping
from liveportrait_jax.cli.common import add_model_arguments, models_from_args
from liveportrait_jax.pipeline.options import number_flag

log = logging.getLogger('liveportrait_jax')


def add_parser(sub):
    p = sub.add_parser(
        'app',
        help='web app: animation, portrait editing, video lip retargeting (Gradio)',
        description='Serve the web app locally: portrait animation (source image or video; '
        'driving video, image or motion template), portrait editing with the '
        "reference's retargeting sliders, and video lip retargeting; --animals for "
        'the animal model set. Without converted weights it starts in a labelled '
        'demo mode with RANDOM weights. Nothing is fetched from the internet and no '
        'share link is made.',
    )
    add_model_arguments(p, 'every result')
    p.add_argument(
        '--host',
        default='127.0.0.1',
        help='address to listen on (default 127.0.0.1, this machine only)',
    )
    p.add_argument('--port', type=number_flag('--port'), default=7860, help='port (default 7860)')
    p.add_argument(
        '--output-dir',
        default=None,
        metavar='DIR',
        help='where results are written (default: a new temporary directory)',
    )
    p.add_argument(
        '--chunk',
        type=number_flag('--chunk'),
        default=8,
        help="initial value of the page's chunk-size control (default 8)",
    )
    p.add_argument(
        '--no-examples',
        dest='examples',
        action='store_false',
        help='do not offer the built-in demo media as examples',
    )
    p.set_defaults(func=run)
    return p


def run(args):
    try:
        import gradio  # noqa: F401
    except ImportError:
        print(
            "liveportrait-jax app: the web app needs Gradio: pip install 'liveportrait-jax[app]'",
            file=sys.stderr,
        )
        return 2
    from liveportrait_jax.app import build_app, launch_app

    models = models_from_args(args, fallback=True)  # no weights: the labelled demo
    log.info('models: %r', models)
    app = build_app(
        models,
        animals=args.animals,
        output_dir=args.output_dir,
        default_chunk=args.chunk,
        examples=args.examples,
    )
    log.info('results go to %s', app.lp_output_dir)
    # Served from a thread while this one waits for a stop request (Ctrl-C, SIGTERM): Gradio's own
    # blocking wait expects Ctrl-C as a KeyboardInterrupt, which the CLI no longer raises.
    launch_app(app, host=args.host, port=args.port, block=False)
    try:
        while True:
            stopping.wait(1.0)
    finally:
        app.close()
    return 0
