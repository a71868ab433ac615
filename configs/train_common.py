"""Shared defaults of the fine-tuning configs (train_stitching, train_retargeting_eye/lip, train_openness)."""

import ml_collections


def base(head, arg):
    """The config of `head`; arg 'tiny' gives the small variant the tests run."""
    c = ml_collections.ConfigDict()
    c.head = head
    c.weights = 'weights'  # converted model set (liveportrait-jax convert)
    c.random_weights = False  # True: random model weights (tests, dry runs)
    c.model_config = 'full'
    c.data_dir = 'data/prepared'  # train/prepare_data.py output
    c.held_out_videos = []  # video file names kept out of training, for evaluation
    c.openness_checkpoint = 'runs/openness'  # for the eye/lip heads
    c.seed = 0
    c.batch_size = 8
    c.total_steps = 20000
    c.learning_rate = 1e-4
    c.warmup_steps = 500
    c.weight_decay = 1e-4
    c.grad_clip = 1.0
    c.checkpoint_every = 500
    c.keep_checkpoints = 3
    c.log_every = 50
    c.sample_every = 500
    c.distributed = False
    c.loss = ml_collections.ConfigDict({'w_reg': 0.1, 'w_open': 5.0})
    c.wandb = ml_collections.ConfigDict({'mode': 'disabled', 'project': 'liveportrait-jax',
                                         'run_id': None})
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
