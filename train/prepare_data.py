"""Turn a folder of face videos into training shards (crops, landmarks, ratios, frozen M outputs).

python train/prepare_data.py videos/ data/prepared --weights weights
# same as: liveportrait-jax prepare-data videos/ data/prepared --weights weights
"""

import sys

from liveportrait_jax.cli import main

if __name__ == '__main__':
    sys.exit(main(['prepare-data'] + sys.argv[1:]))
