"""``stigmer init [DIR]``: write the examples' input files into the workspace, and a starter agent.

The agents of ``examples/`` work on files of the workspace (``notes/`` for
summarize-folder, ``src/`` for find-todos). A fresh home has an empty
workspace, so ``init`` writes those sample files (package data, so an
installed CLI has them too). Given a DIR, it also writes a starter agent
there (``agent.yaml``, which runs as written on those files) with the agent
schema beside it (``agent.schema.json``) for editors. A file that is already
there is kept, never overwritten.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import typer

from stigmer.cli._output import JSON_MODE, print_json


def _sample_files() -> list[tuple[str, Traversable]]:
    """(path relative to the workspace, the packaged file) of every sample file."""
    root = resources.files("stigmer.cli").joinpath("samples", "workspace")
    out: list[tuple[str, Traversable]] = []

    def walk(node: Traversable, rel: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name == "__pycache__":
                continue
            path = f"{rel}/{child.name}" if rel else child.name
            if child.is_dir():
                walk(child, path)
            else:
                out.append((path, child))

    walk(root, "")
    return out


def _workspace(flag: str | None) -> Path:
    """The folder to write in: ``--workspace``, the running stack's, else the setting."""
    from stigmer.cli.server import _last_start_flags
    from stigmer.settings import resolve

    chosen = flag or _last_start_flags().get("workspace")
    return resolve(flags={"workspace": chosen}).workspace_dir


#: What ``init DIR`` writes there.
AGENT_FILE = "agent.yaml"
SCHEMA_FILE = "agent.schema.json"


def _starter(directory: Path, shown: str) -> list[tuple[Path, bytes]]:
    """(path, content) of the starter agent and its schema, for ``directory``."""
    from stigmer.spec.schema import schema_text

    agent = resources.files("stigmer.cli").joinpath("samples", AGENT_FILE).read_text()
    return [
        (directory / AGENT_FILE, agent.replace("{dir}", shown).encode()),
        (directory / SCHEMA_FILE, schema_text().encode()),
    ]


def _missing_parents(folder: Path, top: Path) -> list[Path]:
    """The folders between ``top`` and ``folder`` that do not exist yet (outermost first)."""
    out: list[Path] = []
    while folder != top and top in folder.parents and not folder.exists():
        out.append(folder)
        folder = folder.parent
    return out[::-1]


def _owned_like_workspace(ws: Path, paths: list[Path]) -> None:
    """Run as root, new files get the workspace's owner: the runner (a non-root uid in its
    container) edits them. Otherwise they are the user's, as the workspace is."""
    import os

    if os.geteuid() != 0:
        return
    st = ws.stat()
    if st.st_uid == 0:
        return
    for path in paths:
        os.chown(path, st.st_uid, st.st_gid)


def init(
    directory: str | None = typer.Argument(
        None,
        metavar="DIR",
        help=f"Also write a starter agent here ({AGENT_FILE}, with {SCHEMA_FILE} for editors).",
        show_default=False,
    ),
    workspace: str | None = typer.Option(
        None,
        "--workspace",
        metavar="DIR",
        help="Write here (default: the running stack's workspace, else the `workspace` setting: "
        "$STIGMER_HOME/data/workspace).",
        show_default=False,
    ),
    json_out: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Write the example agents' input files (notes/, src/) into the workspace; with DIR, a starter agent.

    Files that already exist are kept. Then: `stigmer apply -f examples/` and
    `stigmer run summarize-folder "Summarize the notes folder"`; with DIR,
    `stigmer apply -f DIR` and `stigmer run my-agent "Summarize the notes folder"`.
    """
    JSON_MODE["on"] = json_out
    from stigmer.errors import ConfigError
    from stigmer.settings import Paths, home_dir

    for given, what in ((directory, "DIR"), (workspace, "--workspace")):
        if given is not None and Path(given).exists() and not Path(given).is_dir():
            raise ConfigError(
                f"{given} ({what}) is a file, not a folder.",
                f"Name a folder for {what} (it is made if missing).",
            )
    ws = _workspace(workspace)
    if ws == Paths(home_dir()).workspace:
        Paths(home_dir()).ensure()  # the home's folders, private
    written: list[str] = []
    kept: list[str] = []
    for rel, source in _sample_files():
        target = ws / rel
        if target.exists():
            kept.append(rel)
            continue
        made = _missing_parents(target.parent, ws)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        _owned_like_workspace(ws, [*made, target])
        written.append(rel)
    agent: dict[str, list[str]] = {"written": [], "kept": []}
    if directory is not None:
        for target, content in _starter(Path(directory), directory):
            if target.exists():
                agent["kept"].append(str(target))
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            agent["written"].append(str(target))
    if json_out:
        out: dict[str, object] = {"workspace": str(ws), "written": written, "kept": kept}
        if directory is not None:
            out["agent"] = {"directory": str(Path(directory).resolve()), **agent}
        print_json(out)
        return
    for rel in written:
        print(f"wrote {rel}")
    for rel in kept:
        print(f"kept {rel} (it exists)")
    print(f"The examples' input files are in {ws}.")
    if directory is not None:
        for path in agent["written"]:
            print(f"wrote {path}")
        for path in agent["kept"]:
            print(f"kept {path} (it exists)")
        print(
            f"Next: stigmer apply -f {directory} && "
            'stigmer run my-agent "Summarize the notes folder"'
        )
