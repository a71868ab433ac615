"""Fine-tune the stitching head of LivePortrait.

python train/train.py --config configs/train_stitching.py --workdir runs/stitching
python train/train.py --config configs/train_stitching.py:tiny --workdir /tmp/stitching   # tiny, random weights
"""

from liveportrait_jax.training.config import base


def get_config(arg=None):
    return base('stitching', arg)
