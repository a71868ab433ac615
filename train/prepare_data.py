"""Turn a folder of face videos into training shards (crops, landmarks, ratios, frozen M outputs).

    python train/prepare_data.py videos/ data/prepared --weights weights
"""

import sys

from liveportrait_jax.training.main import prepare_main

if __name__ == '__main__':
    sys.exit(prepare_main())
