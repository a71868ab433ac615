"""The `liveportrait-jax` command line: one module per subcommand, each a thin driver over the
library with `add_parser(subparsers)` and `run(args)`."""

import argparse
import importlib
import logging
import sys

# Subcommand -> module of this package. Modules are imported when the parser is built; each keeps
# its heavy imports (JAX, OpenCV, Gradio) inside `run`, so `--help` is quick.
SUBCOMMANDS = {
    'animate': 'animate',
    'convert': 'convert',
    'bench': 'bench',
    'app': 'app',
    'train': 'train',
    'prepare-data': 'prepare_data',
}


def setup_logging():
    """Our progress lines at INFO; libraries' chatter (JAX backend probing, orbax narrating every
    checkpoint, absl) at WARNING."""
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    for name in ('absl', 'orbax', 'jax', 'jax._src.xla_bridge'):
        logging.getLogger(name).setLevel(logging.WARNING)


def build_parser():
    parser = argparse.ArgumentParser(
        prog='liveportrait-jax', description='LivePortrait portrait animation in JAX / Flax NNX.'
    )
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    for module in SUBCOMMANDS.values():
        importlib.import_module(f'{__name__}.{module}').add_parser(sub)
    return parser


def main(argv=None):
    from liveportrait_jax.io.errors import OutputError

    parser = build_parser()
    # Only `train` takes extra arguments: its --config.KEY=VALUE overrides (ml_collections).
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, 'accepts_config_overrides', False):
        parser.error(f'unrecognized arguments: {" ".join(extra)}')
    args.config_overrides = extra
    setup_logging()
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, OutputError) as e:
        # CheckpointError, InputError, NoFaceError and option errors are ValueErrors: one clear
        # line naming the file and the problem instead of a traceback.
        print(f'liveportrait-jax {args.command}: error: {e}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f'liveportrait-jax {args.command}: interrupted; no partial output was kept',
            file=sys.stderr,
        )
        return 130


if __name__ == '__main__':
    sys.exit(main())
