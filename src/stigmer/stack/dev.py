"""Development mode (``stigmer server start --dev``): the runner runs a checkout's sources.

* the source is the ``dev_source`` setting (``STIGMER_DEV_SOURCE``), else the
  ``src`` folder of the checkout this CLI runs from (:attr:`Settings.dev_source_dir`);
  :func:`check` refuses a start without one, before anything starts;
* the local runner gets it first on its ``PYTHONPATH``; the runner container
  gets its ``stigmer`` package bind-mounted read-only at :data:`MOUNT_IN_CONTAINER`,
  first on its ``PYTHONPATH``, over the image's installed package: no image
  rebuild, and the container keeps its hardening;
* the supervisor watches it (:func:`watch`, with watchfiles) and restarts each
  runner through its own restart path when a runner source file changes (a
  file of the package that goes into the image: :func:`is_runner_source`);
  such a restart is no crash and does not count against ``restart_limit``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from stigmer.errors import ConfigError
from stigmer.settings import Settings

log = logging.getLogger("stigmer.supervisor")

#: Where the runner container finds the dev sources (a folder holding ``stigmer/``).
MOUNT_IN_CONTAINER = "/opt/stigmer-dev"
#: Seconds a runner gets to stop for a dev restart before it is killed: what it ran
#: is retried by Temporal on the new runner, and the restart stays within seconds.
RESTART_GRACE = 1.0
#: watchfiles: wait this long (ms) for more changes before acting (an editor's save
#: is often several events), and group changes over at most ``DEBOUNCE_MS``.
STEP_MS = 100
DEBOUNCE_MS = 500


def source_dir(settings: Settings) -> Path:
    """The ``src`` folder the dev runner runs, checked.

    Raises:
        ConfigError: none is known (this stigmer is an installed package and
            ``dev_source`` is unset), or it holds no ``stigmer/runner`` package.
    """
    src = settings.dev_source_dir
    how = (
        "Run `stigmer server start --dev` from a stigmer checkout (`uv run stigmer ...` in a "
        "clone of https://github.com/stigmer/stigmer), or point dev_source "
        "(STIGMER_DEV_SOURCE) at the src folder of one."
    )
    if src is None:
        import stigmer

        raise ConfigError(
            "--dev runs the agent-runner from a source checkout, and this stigmer is an "
            f"installed package ({Path(stigmer.__file__).parent}), not a checkout.",
            how,
        )
    where = f"dev_source {src}" if settings.dev_source else f"the checkout's src folder {src}"
    if not (src / "stigmer" / "runner" / "__init__.py").is_file():
        raise ConfigError(
            f"--dev: {where} holds no runner sources (no stigmer/runner/__init__.py in it).",
            how,
        )
    return src


def check(settings: Settings) -> None:
    """With ``dev``: the sources are there (see :func:`source_dir`). Nothing otherwise."""
    if settings.dev:
        source_dir(settings)


def package_dir(settings: Settings) -> Path:
    """The ``stigmer`` package the dev runner imports."""
    return source_dir(settings) / "stigmer"


def is_runner_source(path: str | Path, src: Path) -> bool:
    """True for a module of ``src/stigmer`` that goes into the runner image.

    The package folders of the image's source digest (:mod:`stigmer.images.buildinfo`):
    not the CLI, the stack, the server or the image tooling; ``.py`` files only
    (an editor's or sed's temporary file is none).
    """
    from stigmer.images.buildinfo import NOT_IN_IMAGE

    try:
        rel = Path(path).relative_to(src / "stigmer")
    except ValueError:
        return False
    if not rel.parts or rel.parts[0] in NOT_IN_IMAGE:
        return False
    return "__pycache__" not in rel.parts and rel.suffix == ".py"


def unreadable_for_others(pkg: Path) -> Path | None:
    """The first folder or module of ``pkg`` that other users cannot read, if any.

    As root, the runner container runs as a uid no account has
    (:func:`~stigmer.stack.agent_runner_docker.container_user`), which reads the
    mounted sources as "other" (the folders above the mount do not matter).
    """
    for dirpath, _dirs, files in os.walk(pkg):
        mode = os.stat(dirpath).st_mode
        if not (mode & stat.S_IXOTH and mode & stat.S_IROTH):
            return Path(dirpath)
        for name in files:
            path = Path(dirpath, name)
            if path.suffix == ".py" and not (path.stat().st_mode & stat.S_IROTH):
                return path
    return None


def describe(files: list[str]) -> str:
    """``stigmer/runner/tools.py``, or the first three and how many more."""
    shown = ", ".join(files[:3])
    return shown + (f" and {len(files) - 3} more" if len(files) > 3 else "")


async def watch(
    src: Path,
    on_change: Callable[[list[str]], Awaitable[None]],
    stop: asyncio.Event,
) -> None:
    """Call ``on_change`` with the changed runner source files (relative to ``src``) until ``stop``."""
    from watchfiles import DefaultFilter, awatch

    base = DefaultFilter()
    logging.getLogger("watchfiles").setLevel(
        logging.WARNING
    )  # "N changes detected": ours says which

    def wanted(change: Any, path: str) -> bool:
        return base(change, path) and is_runner_source(path, src)

    log.info("dev mode: watching %s for changes to the runner's sources", src / "stigmer")
    async for changes in awatch(
        src / "stigmer",
        watch_filter=wanted,
        step=STEP_MS,
        debounce=DEBOUNCE_MS,
        stop_event=stop,
    ):
        files = sorted({str(Path(p).relative_to(src)) for _c, p in changes})
        if files:
            await on_change(files)
