"""The Gradio web app: animation, portrait editing, video lip retargeting; animal mode.

    from liveportrait_jax.app import build_app, launch_app, load_app_models
    models = load_app_models('weights')          # random (labelled) weights when none are found
    launch_app(build_app(models), host='127.0.0.1', port=7860)

Offline by construction: Gradio's analytics and version check are off (GRADIO_ANALYTICS_ENABLED is
set before Gradio is imported), there is no share link, and the page uses Gradio's bundled fonts.
"""

import os

os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')
os.environ.setdefault('HF_HUB_DISABLE_TELEMETRY', '1')

from liveportrait_jax.app.models import load_app_models  # noqa: E402
from liveportrait_jax.app.ui import RANDOM_BANNER, build_app, launch_app  # noqa: E402

__all__ = ['RANDOM_BANNER', 'build_app', 'launch_app', 'load_app_models']
