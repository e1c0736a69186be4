"""musicmap explorer: the Dash app over a store. Imports ``store`` only, never torch."""

from .app import create_app

__all__ = ["create_app"]
