"""The one policy for "converted weights, or the labelled random-weight demo", and its label.

Every front end (CLI, app, ComfyUI, training, notebooks) gets its models through
`load_models_or_demo` and its output label through `output_label`; only *when* a front end may
fall back differs (its `fallback` argument), never how the fallback looks.
"""

import logging

import jax.numpy as jnp

log = logging.getLogger('liveportrait_jax')

# Burned into every frame rendered with random weights, unless the caller gives its own label.
RANDOM_LABEL = 'RANDOM WEIGHTS - DEMO'
# The config of the random demo networks when a front end does not say (tiny: fast on a CPU).
DEMO_CONFIG = 'tiny'
DEMO_SEED = 0

_BANNER = (
    'DEMO MODE: RANDOM WEIGHTS (config {config!r}). The output is noise, not an animation; '
    'it is labelled as such in every frame. For real results convert the released weights '
    '(README, "Weights").'
)


def output_label(models, label=None):
    """The text to burn into outputs: `label` when given, else RANDOM_LABEL for random weights."""
    if label is not None:
        return label
    return RANDOM_LABEL if getattr(models, 'random_weights', False) else ''


def random_demo_models(config=DEMO_CONFIG, *, dtype=jnp.float32, seed=DEMO_SEED, reason=None):
    """RANDOM-weight models for the demo, announced in the log (with `reason`, if any)."""
    from liveportrait_jax.api import init_random_models

    if reason:
        log.warning('%s', reason)
    log.warning('=' * 72)
    log.warning(_BANNER.format(config=config))
    log.warning('=' * 72)
    return init_random_models(config, seed=seed, dtype=dtype)


def load_models_or_demo(
    weights='weights',
    *,
    variant='human',
    dtype=jnp.float32,
    demo=False,
    fallback=False,
    demo_config=DEMO_CONFIG,
    seed=DEMO_SEED,
):
    """Converted weights, or the labelled random-weight demo.

    Args:
      weights: a converted weights folder (`liveportrait-jax convert`).
      variant: 'human' or 'animals'.
      dtype: compute dtype (a jnp dtype or its name).
      demo: use random weights whatever is on disk.
      fallback: when the weights are missing or unusable, fall back to random weights (with a
        warning) instead of raising the CheckpointError that says how to get them.
      demo_config: 'tiny' or 'full', the config of the random networks.

    Returns:
      LivePortraitModels; `.random_weights` is True for the demo.
    """
    from liveportrait_jax.api import load_models
    from liveportrait_jax.weights.errors import CheckpointError

    dtype = jnp.dtype(dtype)
    if demo:
        return random_demo_models(demo_config, dtype=dtype, seed=seed)
    try:
        return load_models(weights, dtype=dtype, variant=variant)
    except CheckpointError as e:
        if not fallback:
            raise
        return random_demo_models(
            demo_config,
            dtype=dtype,
            seed=seed,
            reason=f'{e}\nNo usable weights: falling back to the demo.',
        )
