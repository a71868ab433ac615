"""Fine-tune a LivePortrait head: stitching, eye or lip retargeting (or the openness regressor).

    python train/train.py --config configs/train_stitching.py --workdir runs/stitching
    python train/train.py --config configs/train_retargeting_eye.py:tiny --workdir /tmp/eye
"""

import sys

from liveportrait_jax.training.main import train_main

if __name__ == '__main__':
    sys.exit(train_main())
