"""Command-line entry points for fine-tuning (train/train.py and train/prepare_data.py call these)."""

import argparse
import importlib.util
import json
import logging
import os
import sys


def load_config(spec):
    """'configs/train_x.py' or 'configs/train_x.py:tiny' -> its get_config(arg)."""
    path, _, arg = spec.partition(':')
    if not os.path.isfile(path):
        raise ValueError(f'{path!r}: config file not found')
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    if root not in sys.path:
        sys.path.insert(0, root)
    module_spec = importlib.util.spec_from_file_location('_train_config', path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)


from liveportrait_jax.cli_logging import setup_logging as _setup_logging


def _models(config):
    import liveportrait_jax as lp
    if config.random_weights:
        logging.warning('RANDOM model weights (config.random_weights): for tests and dry runs only')
        return lp.init_random_models(config.model_config, seed=config.seed)
    return lp.load_models(config.weights)


def train_main(argv=None):
    ap = argparse.ArgumentParser(description='Fine-tune a LivePortrait head (see README, '
                                             '"Fine-tuning").')
    ap.add_argument('--config', required=True, help='configs/train_<head>.py[:tiny]')
    ap.add_argument('--workdir', required=True, help='checkpoints, history and exports go here')
    ap.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                    help='override a config value, e.g. --set total_steps=100')
    args = ap.parse_args(argv)
    _setup_logging()
    config = load_config(args.config)
    for item in args.set:
        key, _, value = item.partition('=')
        node = config
        *parents, leaf = key.split('.')
        for p in parents:
            node = node[p]
        node[leaf] = type(node[leaf])(json.loads(value)) if node[leaf] is not None else value
    from liveportrait_jax.training.trainer import evaluate_openness, train
    from liveportrait_jax.training.data import TrainData
    models = None if config.head == 'openness' else _models(config)
    data = TrainData(config.data_dir)
    result = train(config, args.workdir, models=models, data=data,
                   log=logging.getLogger('liveportrait_jax').info)
    if config.head == 'openness':
        _, held = data.split(list(config.held_out_videos))
        if len(held):
            report = evaluate_openness(result.params, data, held)
            with open(os.path.join(args.workdir, 'eval.json'), 'w') as f:
                json.dump(report, f, indent=1)
            logging.info('held-out agreement with MediaPipe: %s', report)
    else:
        from liveportrait_jax.training.export import export_stitching_module
        path = export_stitching_module(models, os.path.join(args.workdir,
                                                            'stitching_retargeting_module.pth'),
                                       overrides={config.head: result.params})
        logging.info('exported %s (use: liveportrait-jax animate --stitching-weights %s)',
                     path, path)
    return 0


def prepare_main(argv=None):
    ap = argparse.ArgumentParser(description='Prepare face videos for fine-tuning: crops, '
                                             'landmarks, ratios, frozen M outputs (resumable).')
    ap.add_argument('videos', help='folder of face videos')
    ap.add_argument('out', help='output folder (shards/ and manifest.json)')
    ap.add_argument('--weights', default='weights')
    ap.add_argument('--random-weights', choices=('tiny', 'full'),
                    help='RANDOM model weights of this config (tests, dry runs)')
    ap.add_argument('--frame-stride', type=int, default=2)
    ap.add_argument('--max-frames', type=int, default=120, help='frames kept per video')
    args = ap.parse_args(argv)
    _setup_logging()
    import liveportrait_jax as lp
    from liveportrait_jax.training.data import prepare_data
    models = (lp.init_random_models(args.random_weights) if args.random_weights
              else lp.load_models(args.weights))
    manifest = prepare_data(models, args.videos, args.out, frame_stride=args.frame_stride,
                            max_frames=args.max_frames)
    logging.info('%d videos, %d frames prepared; %d skipped', len(manifest['videos']),
                 manifest['total_frames'], len(manifest['skipped']))
    for name, why in manifest['skipped'].items():
        logging.info('  skipped %s: %s', name, why)
    return 0
