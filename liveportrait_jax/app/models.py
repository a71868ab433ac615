"""Model loading for the app: the converted weights, or labelled random weights (demo mode)."""

import logging

log = logging.getLogger('liveportrait_jax')


def load_app_models(weights='weights', *, animals=False, demo=False, config='tiny',
                    dtype='float32'):
    """The model set for the app; falls back to RANDOM weights (demo mode) when none are found.

    Args:
      weights: converted weights directory (`liveportrait-jax convert`).
      animals: load the animal set (weights/animals).
      demo: use random weights even if weights exist.
      config: model config of the random weights ('tiny' is fast, 'full' the released sizes).
      dtype: compute dtype name of the convolutions.

    Returns:
      LivePortraitModels; `.random_weights` is True in demo mode (the page then says so).
    """
    import jax.numpy as jnp
    import liveportrait_jax as lp
    from liveportrait_jax.weights.errors import CheckpointError
    dtype = jnp.dtype(dtype)
    if not demo:
        try:
            return lp.load_models(weights, dtype=dtype,
                                  variant='animals' if animals else 'human')
        except CheckpointError as e:
            log.warning('%s\nNo usable weights: starting in demo mode with RANDOM weights.', e)
    log.warning('DEMO MODE: RANDOM WEIGHTS (config %r); results are noise and are labelled so.',
                config)
    return lp.init_random_models(config, seed=0, dtype=dtype)
