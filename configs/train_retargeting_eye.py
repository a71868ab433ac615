"""Fine-tune the eye head of LivePortrait.

python train/train.py --config configs/train_retargeting_eye.py --workdir runs/eye
python train/train.py --config configs/train_retargeting_eye.py:tiny --workdir /tmp/eye   # tiny, random weights
"""

from liveportrait_jax.training.config import base


def get_config(arg=None):
    return base('eye', arg)
