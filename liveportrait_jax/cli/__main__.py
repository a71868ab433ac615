"""`python -m liveportrait_jax.cli`: the same as the `liveportrait-jax` command."""

import sys

from liveportrait_jax.cli import main

sys.exit(main())
