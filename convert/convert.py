"""Convert the released LivePortrait PyTorch checkpoints to liveportrait-jax model sets.

python convert/convert.py pretrained_weights weights/converted
# same as: liveportrait-jax convert pretrained_weights weights/converted
"""

import sys

from liveportrait_jax.cli import main

if __name__ == '__main__':
    sys.exit(main(['convert'] + sys.argv[1:]))
