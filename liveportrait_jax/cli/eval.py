"""`liveportrait-jax eval VIDEOS`: self- (and cross-) reenactment metrics over a folder of face
videos, each beside its "no motion" baseline (README "Evaluation")."""

import csv
import io
import json
import logging
import os

log = logging.getLogger('liveportrait_jax')


def add_parser(sub):
    from liveportrait_jax.cli.common import add_model_arguments
    from liveportrait_jax.pipeline.options import add_option_arguments, number_flag

    p = sub.add_parser(
        'eval',
        help='reenactment metrics over a folder of face videos, beside a no-motion baseline',
        description='Self-reenactment (the first frame of each video is the source, the video '
        'drives it, the generated frames are compared with the real ones: L1, PSNR, SSIM, '
        'landmark distance, head-pose error, expression distance, eye/lip openness error) and '
        "with --cross cross-reenactment (each clip drives the next clip's first frame). Every "
        'metric is reported beside the "no motion" baseline (the source frame repeated). Writes '
        'eval.json (settings, per-clip rows, summary with 95%% confidence intervals) and '
        'eval.csv to OUTDIR.',
    )
    p.add_argument('videos', help='folder of face videos')
    p.add_argument('-o', '--output-dir', default='eval', metavar='OUTDIR',
                   help='eval.json and eval.csv go here (default: eval)')  # fmt: skip
    p.add_argument('--cross', action='store_true', help='also cross-reenactment')
    p.add_argument('--max-frames', type=number_flag('--max-frames'), default=50, metavar='N',
                   help='frames of each clip (default 50)')  # fmt: skip
    p.add_argument(
        '--chunk',
        type=number_flag('--chunk'),
        default=8,
        help='frames per device batch (default 8)',
    )
    p.add_argument(
        '--stitching-weights',
        metavar='PTH',
        help='a fine-tuned stitching/retargeting module (.pth, from train) instead of the '
        "model set's",
    )
    p.add_argument(
        '--wandb-mode',
        default='offline',
        choices=('offline', 'online', 'disabled'),
        help='log the summary, the table and sample frames to wandb (default offline, into '
        'OUTDIR/wandb)',
    )
    add_model_arguments(p, 'the evaluation')
    add_option_arguments(p)
    p.set_defaults(func=run)
    return p


def _write(path, text):
    from liveportrait_jax.io import atomic_write_path

    with atomic_write_path(path) as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)


def _csv(rows):
    buf = io.StringIO()
    keys = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, keys)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def run(args):
    from liveportrait_jax import distributed

    index, count = distributed.initialize()  # before anything starts JAX
    from liveportrait_jax.api import with_stitching_weights
    from liveportrait_jax.cli.common import models_from_args
    from liveportrait_jax.evaluation import protocol
    from liveportrait_jax.pipeline.options import options_from_args

    options = options_from_args(args)
    clips = protocol.list_clips(args.videos)  # a clear error before loading anything
    models = models_from_args(args, fallback=False)
    if args.stitching_weights:
        models = with_stitching_weights(models, args.stitching_weights)
    if models.random_weights:
        log.warning('RANDOM WEIGHTS: these numbers measure noise, not LivePortrait')
    mine = clips[index::count]
    rows, samples = protocol.evaluate(
        models, args.videos, options, cross=args.cross, max_frames=args.max_frames,
        chunk=args.chunk, progress=True, clips=mine,
    )  # fmt: skip
    os.makedirs(args.output_dir, exist_ok=True)
    parts = distributed.gather_json(rows, args.output_dir, 'eval')  # process 0 writes the table
    if parts is None:
        return 0
    if len(parts) > 1:  # the processes' clips in one order
        rows = sorted(
            (r for part in parts for r in part), key=lambda r: (r['mode'] != 'self', r['clip'])
        )
    summary = protocol.summarize(rows)
    settings = {
        'videos': os.path.abspath(args.videos),
        'clips': len(clips),
        'max_frames': args.max_frames,
        'models': models.source,
        'random_weights': bool(models.random_weights),
        'dtype': args.dtype,
        'chunk': args.chunk,
        'stitching_weights': args.stitching_weights,
        'options': {k: v for k, v in vars(options).items()},
        'processes': count,
    }
    report = {'settings': settings, 'summary': summary, 'rows': rows}
    path = os.path.join(args.output_dir, 'eval.json')
    _write(path, json.dumps(report, indent=1, default=str))
    _write(os.path.join(args.output_dir, 'eval.csv'), _csv(rows))
    for mode, table in summary.items():
        log.info('%s-reenactment over %d clips (result | no-motion baseline):', mode,
                 next(iter(table.values()))['clips'])  # fmt: skip
        for k, s in table.items():
            log.info('  %-11s %9.4f +- %-8.4f | %9.4f +- %.4f', k, s['mean'], s['ci95'],
                     s['baseline_mean'], s['baseline_ci95'])  # fmt: skip
    log.info('wrote %s and eval.csv', path)
    if args.wandb_mode != 'disabled' and index == 0:
        _log_wandb(args, report, samples)
    return 0


def _log_wandb(args, report, samples):
    import wandb

    run = wandb.init(
        project='liveportrait-jax-eval', mode=args.wandb_mode, dir=args.output_dir,
        config=report['settings'],
    )  # fmt: skip
    flat = {
        f'{mode}/{k}{suffix}': s[key]
        for mode, table in report['summary'].items()
        for k, s in table.items()
        for key, suffix in (('mean', ''), ('baseline_mean', '_baseline'))
    }
    rows = report['rows']
    keys = list(dict.fromkeys(k for r in rows for k in r))
    flat['clips'] = wandb.Table(columns=keys, data=[[r.get(k) for k in keys] for r in rows])
    for name, image in list(samples.items())[:8]:
        flat[f'samples/{name}'] = wandb.Image(
            image, caption='real or driving | generated | baseline'
        )
    run.log(flat)
    run.finish()
