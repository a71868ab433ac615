"""Access to the model configs of configs/models.py from inside the library."""

import importlib
import os
import sys


def get_model_config(name='full'):
    """The ml_collections model config `name` ('full' or 'tiny')."""
    try:
        models = importlib.import_module('configs.models')
    except ImportError:
        # Running from a checkout that is not installed: configs/ sits beside the package.
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        if root not in sys.path:
            sys.path.insert(0, root)
        models = importlib.import_module('configs.models')
    return models.get_config(name)
