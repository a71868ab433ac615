"""`liveportrait-jax bench`: speed per stage and end to end, written as JSON."""

import json
import logging
import os

from liveportrait_jax.io import atomic_write_path
from liveportrait_jax.pipeline.options import number_flag


def add_parser(sub):
    p = sub.add_parser(
        'bench',
        help='benchmark the pipeline (random weights) and write JSON',
        description='On random weights: compile time and device ms/frame per stage (M, F, '
        'keypoint math + S, W, G, and W+G with paste-back on the device at a 512x512 and a '
        '1920x1080 source) for each chunk size; host CPU core-ms/frame per stage (decode, '
        'landmarks, crops, upload, encode, comparison panel, the whole animate()) at a 512x512 '
        'and a 1080p source; end-to-end frames/s per chunk size; peak RSS of animate() against '
        "the driving video's length (separate processes, tiny weights).",
    )
    p.add_argument(
        '--config',
        default='full',
        choices=('full', 'tiny'),
        help='model config of the random weights (default: full, the released sizes)',
    )
    p.add_argument(
        '--chunk',
        type=number_flag('--chunk', many=True),
        default='1,4',
        help='comma-separated chunk sizes (default 1,4)',
    )
    p.add_argument(
        '--dtype',
        default='float32',
        choices=('float32', 'bfloat16', 'float16'),
        help='compute dtype of the convolutions (default float32)',
    )
    p.add_argument(
        '--repeats', type=number_flag('--repeats'), default=2, help='timed runs per measurement'
    )
    p.add_argument(
        '--frames',
        type=number_flag('--frames'),
        default=None,
        help='frames of the end-to-end runs and of the whole animate() of the host section '
        '(default: twice the largest chunk)',
    )
    p.add_argument(
        '--host-frames',
        type=number_flag('--host-frames'),
        default=32,
        help='frames of each host stage measured alone (decode, landmarks, ...; default 32)',
    )
    p.add_argument(
        '--rss-frames',
        type=number_flag('--rss-frames', many=True),
        default='100,400',
        help='comma-separated driving-video lengths for the peak-RSS runs, each in a fresh process '
        "(default 100,400; '' skips them)",
    )
    p.add_argument(
        '--rss-size',
        type=number_flag('--rss-size'),
        default=512,
        help='side of the square driving video of the peak-RSS runs (default 512)',
    )
    p.add_argument(
        '--sections',
        help='comma-separated sections to run, of device,host,end-to-end,rss (default: all); '
        'device alone needs neither MediaPipe nor ffmpeg',
    )
    p.add_argument('--json', metavar='FILE', help='write the results here')
    p.set_defaults(func=run)


def run(args):
    import jax.numpy as jnp

    from liveportrait_jax.pipeline.bench import SECTIONS, run_bench

    chunks = args.chunk  # each checked by its flag's type (pipeline.options.FLAG_RANGES)
    if not chunks:
        raise ValueError('--chunk needs at least one chunk size')
    sections = (
        SECTIONS
        if args.sections is None
        else tuple(v.strip() for v in args.sections.split(',') if v.strip())
    )
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown or not sections:
        raise ValueError(f'--sections takes some of {",".join(SECTIONS)}, got {args.sections!r}')
    result = run_bench(
        args.config,
        chunks,
        jnp.dtype(args.dtype),
        args.repeats,
        args.frames,
        log=logging.getLogger('liveportrait_jax').info,
        host_frames=args.host_frames,
        rss_frames=args.rss_frames,
        rss_size=args.rss_size,
        sections=sections,
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
