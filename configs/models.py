"""Model configs: `full` (the released LivePortrait networks) and `tiny` (the test fixtures' sizes).

The library reads them from `liveportrait_jax.models.configs` (their one home); this file exposes
them beside the training configs, loaded by path like them:

    liveportrait-jax convert SRC_DIR DST_DIR --config full
    python -c "from liveportrait_jax.models.configs import get_config; print(get_config('tiny'))"
"""

from liveportrait_jax.models.configs import get_config

__all__ = ['get_config']
