"""`liveportrait-jax batch MANIFEST`: many animate jobs, resumable, split across hosts."""

import logging

log = logging.getLogger('liveportrait_jax')


def add_parser(sub):
    from liveportrait_jax.cli.common import add_model_arguments
    from liveportrait_jax.pipeline.options import number_flag

    p = sub.add_parser(
        'batch',
        help='run a manifest of animate jobs (JSON lines), resumable and shardable',
        description='Run every job of a JSON-lines manifest ({"source", "driving", "options", '
        '"output", "id"} per line) with one model set; finished jobs are skipped, so a rerun '
        'redoes only what did not finish; a failing job is recorded and the rest run. README: '
        '"Batch runs".',
    )
    p.add_argument('manifest', help='the JSON-lines manifest')
    p.add_argument(
        '-o', '--output-dir', default='batch', metavar='OUTDIR',
        help='one folder per job and the results files go here (default: batch)',
    )  # fmt: skip
    p.add_argument(
        '--shard',
        metavar='I/N',
        help='run only jobs k with k %% N == I (default: the SLURM array task, else the JAX '
        'process index when several processes run, else all jobs)',
    )
    add_model_arguments(p, 'every frame')
    p.add_argument(
        '--chunk',
        type=number_flag('--chunk'),
        default=8,
        help='frames per device batch (default 8)',
    )
    p.add_argument(
        '--metrics',
        type=number_flag('--metrics'),
        default=0,
        metavar='N',
        help="also measure each job with eval's cross-reenactment metrics over its first N "
        'frames (pose, expression and eye/lip openness following the driving video, beside the '
        'no-motion baseline; renders those frames again); default 0: none',
    )
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    p.set_defaults(func=run)
    return p


def run(args):
    from liveportrait_jax import distributed
    from liveportrait_jax.pipeline.batch import (
        parse_shard,
        read_manifest,
        run_batch,
        shard_from_environment,
    )

    jobs = read_manifest(args.manifest)  # every line checked before anything runs
    if args.shard:
        shard = parse_shard(args.shard)
    else:
        shard = shard_from_environment() or distributed.initialize()
    from liveportrait_jax.cli.common import models_from_args

    models = models_from_args(args, fallback=False)
    log.info('%d jobs in %s; shard %d/%d', len(jobs), args.manifest, *shard)
    summary = run_batch(
        models,
        jobs,
        args.output_dir,
        shard=shard,
        chunk=args.chunk,
        progress=not args.quiet,
        metrics=_metrics(models, args),
    )
    log.info(
        'shard %s: %d done, %d skipped, %d failed of %d jobs in %.1f s; results: %s',
        summary['shard'], summary['done'], summary['skipped'], summary['failed'],
        summary['jobs'], summary['wall_s'], summary['results'],
    )  # fmt: skip
    return 1 if summary['failed'] else 0


def _metrics(models, args):
    """--metrics N: each job measured by `eval`'s cross-reenactment numbers over N frames."""
    if args.metrics <= 0:
        return None
    import functools

    from liveportrait_jax.evaluation.protocol import job_metrics

    return functools.partial(job_metrics, models, chunk=args.chunk, max_frames=args.metrics)
