"""stigmer: a local-first platform that runs AI agents durably on Temporal."""

from stigmer._version import __version__

__all__ = ["__version__"]
