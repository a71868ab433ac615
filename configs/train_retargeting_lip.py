"""Fine-tune the lip head of LivePortrait.

python train/train.py --config configs/train_retargeting_lip.py --workdir runs/lip
python train/train.py --config configs/train_retargeting_lip.py:tiny --workdir /tmp/lip   # tiny, random weights
"""

from liveportrait_jax.training.config import base


def get_config(arg=None):
    return base('lip', arg)
