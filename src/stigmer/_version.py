"""The package version: the one source for the CLI, the image tag and the image labels."""

__version__ = "0.1.0.dev0"
