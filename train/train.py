"""Fine-tune a LivePortrait head: stitching, eye or lip retargeting (or the openness regressor).

    python train/train.py --config configs/train_stitching.py --workdir runs/stitching
    python train/train.py --config configs/train_retargeting_eye.py:tiny --workdir /tmp/eye \
        --config.total_steps=10
    # same as: liveportrait-jax train --config ... --workdir ...
"""

import sys

from liveportrait_jax.cli import main

if __name__ == '__main__':
    sys.exit(main(['train'] + sys.argv[1:]))
