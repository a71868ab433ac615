"""The fine-tuning config system: the shared defaults of configs/train_*.py (`base`) and their
loading by path with `ml_collections.config_flags` (`load_config`).

    liveportrait-jax train --config configs/train_retargeting_lip.py:tiny --config.batch_size=1
"""

import os

import ml_collections


def base(head, arg):
    """The config of `head`; arg 'tiny' gives the small variant the tests run."""
    c = ml_collections.ConfigDict()
    c.head = head
    c.weights = 'weights'  # converted model set (liveportrait-jax convert)
    c.random_weights = False  # True: random model weights (tests, dry runs)
    c.model_config = 'full'
    c.data_dir = 'data/prepared'  # train/prepare_data.py output
    c.held_out_videos = ()  # video file names kept out of training, for evaluation (a tuple:
    # --config.held_out_videos='("a.mp4",)')
    c.openness_checkpoint = 'runs/openness'  # for the eye/lip heads
    c.seed = 0
    c.batch_size = 8
    c.total_steps = 20000
    c.learning_rate = 1e-4
    c.warmup_steps = 500
    c.weight_decay = 1e-4
    c.grad_clip = 1.0
    # True: the same update, bit for bit, on any number of devices and processes (each example's
    # gradient on its own, summed in row order; a batch that does not divide by the device count is
    # padded with rows that weigh nothing). False: XLA's batched data-parallel step, faster with
    # large per-device batches, whose float rounding depends on the device count (README
    # "Fine-tuning"); the batch must divide by the device count.
    c.device_independent = True
    c.checkpoint_every = 500
    c.keep_checkpoints = 3
    c.log_every = 50
    c.sample_every = 500
    # Several processes: the environment (JAX_COORDINATOR_ADDRESS, ...) is the usual way; these
    # override it ('' / 0 / -1: unset). README "Several processes and hosts".
    c.distributed = ml_collections.ConfigDict(
        {'coordinator': '', 'num_processes': 0, 'process_id': -1}
    )
    c.loss = ml_collections.ConfigDict({'w_reg': 0.1, 'w_open': 5.0})
    c.wandb = ml_collections.ConfigDict(
        {'mode': 'disabled', 'project': 'liveportrait-jax', 'run_id': None}
    )
    # At the end of training, `eval` (README "Evaluation") of the exported head on held-out face
    # videos (a folder; '': none), written to <workdir>/eval.json and logged (wandb too); with
    # every=N also every N steps on the way (<workdir>/eval/step_N/eval.json, the log, wandb).
    c.eval = ml_collections.ConfigDict({'videos': '', 'max_frames': 30, 'cross': False, 'every': 0})
    if arg == 'tiny':
        c.random_weights = True
        c.model_config = 'tiny'
        c.batch_size = 4
        c.total_steps = 30
        c.learning_rate = 3e-3
        c.warmup_steps = 2
        c.checkpoint_every = 3
        c.log_every = 5
        c.openness_checkpoint = ''
    elif arg not in (None, '', 'full'):
        raise ValueError(f'unknown variant {arg!r}: use "full" (default) or "tiny"')
    return c


def load_config(spec, overrides=()):
    """'configs/train_x.py[:arg]' -> its get_config(arg), with `--config.KEY=VALUE` overrides.

    The file is loaded by path (no sys.path edits); overrides are parsed by ml_collections'
    config_flags, which checks each key exists and converts the value to the field's type.
    """
    from absl import flags
    from ml_collections import config_flags

    path = spec.partition(':')[0]
    if not os.path.isfile(path):
        raise ValueError(f'{path!r}: config file not found')
    for item in overrides:
        if not item.startswith('--config.'):
            raise ValueError(f'{item!r}: overrides look like --config.KEY=VALUE')
    argv = ['liveportrait-jax train', f'--config={spec}', *overrides]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file(
        'config', None, 'training config', flag_values=fv, lock_config=True, sys_argv=argv
    )
    try:
        fv(argv)
        return fv.config
    except AttributeError as e:  # an override names a key the config does not have
        key = e.args[0].args[0] if isinstance(e.args[0], KeyError) else e.args[0]
        key = str(key).strip('\'"')  # ml_collections quotes the name once more
        raise ValueError(
            f'{path}: the config has no key {key!r} (from {" ".join(overrides)})'
        ) from None
    except flags.Error as e:
        raise ValueError(f'{path}: {e}') from None
