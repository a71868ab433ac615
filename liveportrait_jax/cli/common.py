"""Arguments shared by the subcommands that load a model set (animate, app)."""

DTYPES = ('float32', 'bfloat16', 'float16')


def add_model_arguments(p, what='the output'):
    """--weights, --animals, --demo, --config, --dtype."""
    p.add_argument(
        '--weights',
        default='weights',
        metavar='DIR',
        help='converted weights (liveportrait-jax convert); default: weights',
    )
    p.add_argument(
        '--animals',
        action='store_true',
        help='animal mode: the animals model set and a cat-face (or --crop-box) crop',
    )
    p.add_argument(
        '--demo',
        action='store_true',
        help=f'use RANDOM weights even if weights exist ({what} is labelled as such)',
    )
    p.add_argument(
        '--config',
        default='tiny',
        choices=('tiny', 'full'),
        help='model config of the random demo weights (default: tiny, fast)',
    )
    p.add_argument(
        '--dtype',
        default='float32',
        choices=DTYPES,
        help='compute dtype of the convolutions (default float32; half precision is for GPUs)',
    )


def models_from_args(args, *, fallback):
    """The model set the arguments ask for (liveportrait_jax.demo's policy). Without usable
    weights the error names both ways on: convert the released weights, or --demo now."""
    from liveportrait_jax.demo import load_models_or_demo
    from liveportrait_jax.weights.errors import CheckpointError

    try:
        return load_models_or_demo(
            args.weights,
            variant='animals' if args.animals else 'human',
            dtype=args.dtype,
            demo=args.demo,
            fallback=fallback,
            demo_config=args.config,
        )
    except CheckpointError as e:
        raise CheckpointError(
            f'{e}; or, to try it now, add --demo (random weights: the output is noise, labelled '
            'as such in every frame)'
        ) from None
