"""`liveportrait-jax convert`: the released PyTorch checkpoints -> model sets (no PyTorch needed)."""


def add_parser(sub):
    p = sub.add_parser(
        'convert',
        help='convert the released PyTorch checkpoints (no PyTorch needed)',
        description='Convert the released LivePortrait .pth checkpoints into liveportrait-jax '
        'model sets. SRC is the released pretrained_weights/ folder (with '
        'liveportrait/ and optionally liveportrait_animals/) or a folder holding the '
        'five .pth files; DST receives human/ and animals/ sets.',
    )
    p.add_argument(
        'src',
        metavar='SRC_DIR',
        help='the released pretrained_weights/ folder, or a folder holding the five .pth files',
    )
    p.add_argument('dst', metavar='DST_DIR', help='output folder (human/ and animals/ sets)')
    p.add_argument(
        '--config',
        default='auto',
        choices=('auto', 'full', 'tiny'),
        help='model config of the checkpoints (default: auto-detect)',
    )
    p.set_defaults(func=run)
    return p


def run(args):
    from liveportrait_jax.weights.convert import convert

    for r in convert(args.src, args.dst, config=args.config):
        print(f'{r.variant}: {r.status} -> {r.directory} (config {r.config})')
    return 0
