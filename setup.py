"""Only for the optional compiled build (stockstream/compiled.py); everything else is in pyproject.toml.

    STOCKSTREAM_COMPILE=1 pip wheel --no-build-isolation .
"""

import os
import sys

from setuptools import setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stockstream import compiled  # noqa: E402  (the source tree, not an installed copy)

setup(ext_modules=compiled.extensions() if compiled.requested() else [])
