"""Fine-tune the openness regressor (differentiable eye/lip openness) of LivePortrait.

python train/train.py --config configs/train_openness.py --workdir runs/openness
python train/train.py --config configs/train_openness.py:tiny --workdir /tmp/openness   # tiny, random weights
"""

from liveportrait_jax.training.config import base


def get_config(arg=None):
    c = base('openness', arg)
    c.learning_rate = 1e-3 if arg != 'tiny' else 3e-3
    c.total_steps = 5000 if arg != 'tiny' else 30
    c.batch_size = 32 if arg != 'tiny' else 4
    c.openness_width = 32 if arg != 'tiny' else 8
    return c
