"""Model loading for the app: the converted weights, or labelled random weights (demo mode)."""


def load_app_models(
    weights='weights', *, animals=False, demo=False, config='tiny', dtype='float32'
):
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
    from liveportrait_jax.demo import load_models_or_demo

    return load_models_or_demo(
        weights,
        variant='animals' if animals else 'human',
        dtype=dtype,
        demo=demo,
        fallback=True,
        demo_config=config,
    )
