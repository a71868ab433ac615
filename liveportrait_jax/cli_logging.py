"""Console logging of the command-line tools: our progress lines at INFO, libraries' chatter off."""

import logging


def setup_logging():
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    # JAX logs its backend probing (e.g. "Unable to initialize backend 'tpu'") and orbax/absl
    # narrate every checkpoint at INFO; keep them to warnings.
    for name in ('absl', 'orbax', 'jax', 'jax._src.xla_bridge'):
        logging.getLogger(name).setLevel(logging.WARNING)
