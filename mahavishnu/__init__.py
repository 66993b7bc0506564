"""Mahavishnu: an MCP server that orchestrates work across many git repositories."""

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """`__version__`, looked up only when asked: reading the installed metadata costs every
    CLI start about 50 ms (a busy port must be reported within a second of the command)."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mahavishnu")
    except PackageNotFoundError:  # running from a source tree without installation
        return "0.0.0+unknown"
