"""Files only the owner may read: written atomically, mode 0600; homes kept private."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def make_private(root: Path, skip: tuple[Path, ...] = ()) -> list[Path]:
    """Take group and other permissions off ``root`` and everything under it; what changed.

    Folders become at most 0700 and files 0600 (owner bits are kept). Symbolic
    links are not followed, and the folders in ``skip`` (the agents' workspace)
    are left as they are, with what is in them. Homes made by earlier versions
    of stigmer had 0644 files in 0755 folders: this fixes them at start.
    """
    changed: list[Path] = []
    skipped = {p.resolve() for p in skip}

    def fix(path: Path) -> None:
        try:
            st = path.lstat()
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
            return
        os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
        changed.append(path)

    fix(root)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if (here / d).resolve() not in skipped]
        for name in (*dirnames, *filenames):
            fix(here / name)
    return changed
