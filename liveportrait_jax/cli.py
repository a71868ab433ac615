"""The `liveportrait-jax` command line."""

import argparse
import sys


def _cmd_convert(args):
    from liveportrait_jax.weights.convert import convert
    results = convert(args.src, args.dst, config=args.config)
    for r in results:
        print(f'{r.variant}: {r.status} -> {r.directory} (config {r.config})')
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog='liveportrait-jax',
        description='LivePortrait portrait animation in JAX / Flax NNX.')
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser(
        'convert', help='convert the released PyTorch checkpoints (no PyTorch needed)',
        description='Convert the released LivePortrait .pth checkpoints into liveportrait-jax '
                    'model sets. SRC is the released pretrained_weights/ folder (with '
                    'liveportrait/ and optionally liveportrait_animals/) or a folder holding the '
                    'five .pth files; DST receives human/ and animals/ sets.')
    p.add_argument('src', metavar='SRC_DIR')
    p.add_argument('dst', metavar='DST_DIR')
    p.add_argument('--config', default='auto', choices=('auto', 'full', 'tiny'),
                   help='model config of the checkpoints (default: auto-detect)')
    p.set_defaults(func=_cmd_convert)

    from liveportrait_jax import cli_animate, cli_app, cli_bench
    cli_animate.add_parser(sub)
    cli_bench.add_parser(sub)
    cli_app.add_parser(sub)
    return parser


def main(argv=None):
    from liveportrait_jax.io.errors import OutputError
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, OutputError) as e:
        # CheckpointError, InputError, NoFaceError and option errors are ValueErrors: one clear
        # line naming the file and the problem instead of a traceback.
        print(f'liveportrait-jax {args.command}: error: {e}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'liveportrait-jax {args.command}: interrupted; no partial output was kept',
              file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
