"""Mahavishnu: an MCP server that orchestrates work across many git repositories."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mahavishnu")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
