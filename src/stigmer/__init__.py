"""stigmer: a local-first platform that runs AI agents durably on Temporal."""

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    # computed on first use (a source checkout asks git): commands that never
    # print or compare the version do not pay for it
    if name == "__version__":
        from stigmer._version import __version__ as version

        globals()["__version__"] = version
        return version
    raise AttributeError(f"module 'stigmer' has no attribute {name!r}")
