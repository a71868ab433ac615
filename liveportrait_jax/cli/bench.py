"""`liveportrait-jax bench`: speed per stage and end to end, written as JSON."""

import json
import logging
import os

from liveportrait_jax.io import atomic_write_path


def add_parser(sub):
    p = sub.add_parser(
        'bench',
        help='benchmark the pipeline (random weights) and write JSON',
        description='Compile time, ms/frame per stage (landmarks+crop, M, F, '
        'keypoint math + S, W, G, paste-back, encode) and end-to-end '
        'frames/s for each chunk size, on random weights.',
    )
    p.add_argument(
        '--config',
        default='full',
        choices=('full', 'tiny'),
        help='model config of the random weights (default: full, the released sizes)',
    )
    p.add_argument('--chunk', default='1,4', help='comma-separated chunk sizes (default 1,4)')
    p.add_argument(
        '--dtype',
        default='float32',
        choices=('float32', 'bfloat16', 'float16'),
        help='compute dtype of the convolutions (default float32)',
    )
    p.add_argument('--repeats', type=int, default=2, help='timed runs per measurement')
    p.add_argument(
        '--frames',
        type=int,
        default=None,
        help='frames of the end-to-end run (default: twice the largest chunk)',
    )
    p.add_argument('--json', metavar='FILE', help='write the results here')
    p.set_defaults(func=run)


def run(args):
    import jax.numpy as jnp

    from liveportrait_jax.pipeline.bench import run_bench

    try:
        chunks = tuple(int(c) for c in args.chunk.split(','))
    except ValueError:
        raise ValueError(f'--chunk takes comma-separated integers, got {args.chunk!r}') from None
    if any(c < 1 for c in chunks):
        raise ValueError(f'chunk sizes must be positive, got {args.chunk!r}')
    result = run_bench(
        args.config,
        chunks,
        jnp.dtype(args.dtype),
        args.repeats,
        args.frames,
        log=logging.getLogger('liveportrait_jax').info,
    )
    text = json.dumps(result, indent=1)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with atomic_write_path(args.json) as tmp:
            with open(tmp, 'w') as f:
                f.write(text + '\n')
    else:
        print(text)
    return 0
