"""The web app: a FastAPI REST API and the explorer page, as thin shells around the engine.

>>> from actpatch.api import create_app, serve
>>> app = create_app()              # loads the models the settings name
>>> serve(model="demo", port=8000)  # what `actpatch serve` runs
"""

from .app import create_app
from .serve import serve
from .settings import Settings

__all__ = ["Settings", "create_app", "serve"]
