"""`liveportrait-jax train`: fine-tune a head (stitching, eye or lip retargeting) or the openness
regressor, from a config file loaded by path with `--config.KEY=VALUE` overrides."""

import functools
import json
import logging
import os

log = logging.getLogger('liveportrait_jax')


def add_parser(sub):
    p = sub.add_parser(
        'train',
        help='fine-tune the stitching / eye / lip heads (or the openness regressor)',
        description='Fine-tune one head with F, M, W and G frozen (README, "Fine-tuning"). '
        'Override any config value with --config.KEY=VALUE, e.g. '
        '--config.batch_size=1 --config.loss.w_reg=0.5 '
        '--config.held_out_videos=\'("a.mp4",)\'.',
    )
    p.add_argument(
        '--config',
        required=True,
        metavar='FILE[:ARG]',
        help='a config file and its get_config argument, e.g. '
        'configs/train_retargeting_lip.py or configs/train_stitching.py:tiny',
    )
    p.add_argument(
        '--workdir',
        required=True,
        help='checkpoints, history and the exported head go here (resumes from it)',
    )
    p.set_defaults(func=run, accepts_config_overrides=True)
    return p


def run(args):
    from liveportrait_jax import distributed
    from liveportrait_jax.training.config import load_config

    config = load_config(args.config, args.config_overrides)
    # Before anything starts JAX (building the models): join the other processes, if any.
    index, _ = distributed.initialize_from_config(config)
    from liveportrait_jax.demo import load_models_or_demo
    from liveportrait_jax.training.data import TrainData
    from liveportrait_jax.training.trainer import evaluate_openness, train

    models = None
    if config.head != 'openness':
        models = load_models_or_demo(
            config.weights,
            demo=config.random_weights,
            demo_config=config.model_config,
            seed=config.seed,
        )
    data = TrainData(config.data_dir)
    evaluate = None
    if config.head != 'openness' and config.eval.videos and config.eval.every:
        evaluate = functools.partial(evaluate_during_training, models, config, args.workdir)
    result = train(config, args.workdir, models=models, data=data, log=log.info, evaluate=evaluate)
    if index != 0:  # process 0 writes the evaluation and the exported head, once
        distributed.barrier('liveportrait-exported')
        return 0
    if config.head == 'openness':
        _, held = data.split(list(config.held_out_videos))
        if len(held):
            report = evaluate_openness(result.params, data, held)
            with open(os.path.join(args.workdir, 'eval.json'), 'w') as f:
                json.dump(report, f, indent=1)
            log.info('held-out agreement with MediaPipe: %s', report)
    else:
        from liveportrait_jax.training.export import export_stitching_module

        path = export_stitching_module(
            models,
            os.path.join(args.workdir, 'stitching_retargeting_module.pth'),
            overrides={config.head: result.params},
        )
        log.info('exported %s (use: liveportrait-jax animate --stitching-weights %s)', path, path)
        if config.eval.videos:
            evaluate_head(models, path, config, args.workdir)
    distributed.barrier('liveportrait-exported')
    return 0


def evaluate_during_training(models, config, workdir, step, params):
    """config.eval.every: the head at `step` exported to <workdir>/eval/step_<step>/ and judged
    there as evaluate_head does at the end; returns the summary's means for the trainer's log."""
    from liveportrait_jax.training.export import export_stitching_module

    out = os.path.join(workdir, 'eval', f'step_{step}')
    os.makedirs(out, exist_ok=True)
    path = export_stitching_module(
        models,
        os.path.join(out, 'stitching_retargeting_module.pth'),
        overrides={config.head: params},
    )
    summary = evaluate_head(models, path, config, out, log_wandb=False)
    return _scores(summary)


def _scores(summary):
    return {f'eval/{mode}/{k}': s['mean'] for mode, t in summary.items() for k, s in t.items()}


def evaluate_head(models, exported, config, workdir, log_wandb=True):
    """The fine-tuned head judged by `eval`'s numbers (beside the no-motion baseline) on the
    config's held-out videos: <workdir>/eval.json, the log, and wandb when the run logs there
    (and log_wandb)."""
    from liveportrait_jax.api import with_stitching_weights
    from liveportrait_jax.evaluation import protocol
    from liveportrait_jax.pipeline import AnimateOptions

    tuned = with_stitching_weights(models, exported)
    rows, _ = protocol.evaluate(
        tuned, config.eval.videos, AnimateOptions(), cross=config.eval.cross,
        max_frames=config.eval.max_frames, progress=False,
    )  # fmt: skip
    summary = protocol.summarize(rows)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'eval.json'), 'w') as f:
        json.dump({'exported': exported, 'summary': summary, 'rows': rows}, f, indent=1)
    for mode, table in summary.items():
        for k, s in table.items():
            log.info('eval %s %s: %.4f (no-motion baseline %.4f)', mode, k, s['mean'],
                     s['baseline_mean'])  # fmt: skip
    if log_wandb and config.wandb.mode != 'disabled':
        import wandb

        run = wandb.init(project=config.wandb.project, mode=config.wandb.mode, dir=workdir,
                         id=config.wandb.run_id, resume='allow')  # fmt: skip
        run.log(_scores(summary))
        run.finish()
    return summary
