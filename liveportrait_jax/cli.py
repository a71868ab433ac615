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
    return parser


def main(argv=None):
    from liveportrait_jax.weights.errors import CheckpointError
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f'liveportrait-jax {args.command}: error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
