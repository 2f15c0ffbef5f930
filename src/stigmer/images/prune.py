"""``stigmer image prune``: which runner images and containers may go, and removing them.

What is considered, and nothing else:

* **containers** stigmer made: labelled ``io.stigmer.home`` and
  ``io.stigmer.component`` (:mod:`stigmer.stack.agent_runner_docker`), and not
  running. A stopped one is kept while the stack of its home runs (its
  supervisor replaces it itself).
* **images** stigmer built or pulled: labelled ``io.stigmer.source-digest``
  (:mod:`stigmer.images.buildinfo`), whose every tag is in the repository of
  ``runner_image`` or of ``runner_registry``; an untagged one (an older build
  of a tag that was built again) too.

Of those, these are kept: the configured image (``runner_image``), the image of
any container that stays (running or not, ours or not), and the image that a
stack running on this host is configured with (its ``run/stack.json``), even
while it has no container. ``labels`` narrows it further: only what also
carries every one of them is considered.

Nothing is removed by force: an image the engine still needs is reported as
kept, with the engine's reason.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stigmer.images import buildinfo
from stigmer.images.resolve import split_ref
from stigmer.stack.agent_runner_docker import LABEL_COMPONENT, LABEL_HOME

#: Container states in which a container is running (or about to run again).
ALIVE = ("running", "restarting", "paused", "removing")


@dataclass
class Item:
    """One container or image: what it is, its size in bytes, and why it goes or stays."""

    kind: str  # container | image
    id: str  # the full id
    name: str  # container name, or the image's tags ("<none>" when untagged)
    reason: str
    size: int = 0
    refs: list[str] = field(default_factory=list)  # what to remove: tags, else the id
    error: str | None = None

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["refs"]
        return out


@dataclass
class Plan:
    """What a prune removes (containers first, then images) and what it keeps."""

    remove: list[Item] = field(default_factory=list)
    kept: list[Item] = field(default_factory=list)
    failed: list[Item] = field(default_factory=list)

    def count(self) -> str:
        """``2 containers and 3 images``: what :attr:`remove` holds."""
        n = sum(i.kind == "container" for i in self.remove)
        m = len(self.remove) - n
        return f"{n} container{'s' * (n != 1)} and {m} image{'s' * (m != 1)}"

    @property
    def size(self) -> int:
        return sum(i.size for i in self.remove if i.kind == "image")

    def to_dict(self, dry_run: bool) -> dict[str, Any]:
        return {
            "dry_run": dry_run,
            "remove": [i.to_dict() for i in self.remove],
            "kept": [i.to_dict() for i in self.kept],
            "failed": [i.to_dict() for i in self.failed],
            "size": self.size,
        }


def parse_labels(raw: list[str]) -> list[str]:
    """``KEY`` or ``KEY=VALUE`` label filters as the engine takes them.

    Raises:
        ConfigError: an empty key.
    """
    from stigmer.errors import ConfigError

    out = []
    for text in raw:
        key = text.partition("=")[0].strip()
        if not key:
            raise ConfigError(
                f"--label {text!r}: no label key.", "Give --label KEY or --label KEY=VALUE."
            )
        out.append(text.strip())
    return out


def running_stacks() -> dict[Path, str | None]:
    """Homes of this host whose supervisor runs, with the runner image each is configured with.

    Found by their command line (``python -m stigmer.stack.supervisor --home H``);
    the image comes from the home's ``run/stack.json`` (None when unreadable).
    """
    import psutil

    homes: dict[Path, str | None] = {}
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info.get("cmdline") or []
        if "stigmer.stack.supervisor" not in argv or "--home" not in argv:
            continue
        at = argv.index("--home")
        if at + 1 >= len(argv):
            continue
        home = Path(argv[at + 1])
        image = None
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            image = json.loads((home / "run" / "stack.json").read_text())["values"]["runner_image"]
        homes[home] = image if isinstance(image, str) else None
    return homes


def _stack_runs(home: str, running: dict[Path, str | None]) -> bool:
    if Path(home) in running:
        return True
    from stigmer.settings import Paths
    from stigmer.stack.control import supervisor_holds_lock

    try:
        return supervisor_holds_lock(Paths(Path(home)))
    except OSError:  # a home of another user, or on another host
        return False


def _image_id(client: Any, ref: str | None) -> str | None:
    if not ref:
        return None
    try:
        return str(client.api.inspect_image(ref)["Id"])
    except Exception:  # absent, or a reference the engine refuses
        return None


def _tags(entry: dict[str, Any]) -> list[str]:
    return [t for t in entry.get("RepoTags") or [] if t and t != "<none>:<none>"]


def plan(client: Any, settings: Any, labels: list[str] | None = None) -> Plan:
    """What :func:`apply` would do now; removes nothing."""
    labels = labels or []
    out = Plan()
    running = running_stacks()
    containers = client.api.containers(all=True)
    going: set[str] = set()
    for c in containers:
        lab = c.get("Labels") or {}
        if LABEL_HOME not in lab or LABEL_COMPONENT not in lab or not _has(lab, labels):
            continue
        name = ((c.get("Names") or ["?"])[0]).lstrip("/")
        state = c.get("State") or "?"
        home = lab[LABEL_HOME]
        item = Item("container", c["Id"], name, f"{state}, stack home {home}", refs=[c["Id"]])
        if state in ALIVE:
            continue  # a running runner is in use: not even listed
        if _stack_runs(home, running):
            item.reason = f"{state}, but the stack of {home} runs (it replaces the container)"
            out.kept.append(item)
            continue
        out.remove.append(item)
        going.add(c["Id"])
    used: dict[str, str] = {}
    for c in containers:
        if c["Id"] not in going:
            name = ((c.get("Names") or ["?"])[0]).lstrip("/")
            used.setdefault(c.get("ImageID") or "", f"used by container {name}")
    configured = _image_id(client, settings.runner_image)
    protected: dict[str, str] = {}
    if configured:
        protected[configured] = f"the configured image (runner_image {settings.runner_image})"
    for home, ref in running.items():
        found = _image_id(client, ref)
        if found and found not in protected:
            protected[found] = f"the image of the stack running in {home}"
    repos = {split_ref(settings.runner_image)[0], split_ref(settings.runner_registry)[0]}
    flt = {"label": [buildinfo.LABEL_DIGEST, *labels]}
    for entry in client.api.images(filters=flt):
        tags = _tags(entry)
        if any(split_ref(t)[0] not in repos for t in tags):
            continue  # also tagged elsewhere: not ours to judge
        image_id = entry["Id"]
        item = Item(
            "image",
            image_id,
            ", ".join(tags) or "<none>",
            "not the configured image, and unused" if tags else "untagged (an older build), unused",
            size=int(entry.get("Size") or 0),
            refs=tags or [image_id],
        )
        why = protected.get(image_id) or used.get(image_id)
        if why:
            item.reason = why
            out.kept.append(item)
        else:
            out.remove.append(item)
    return out


def _has(labels: dict[str, str], wanted: list[str]) -> bool:
    for text in wanted:
        key, sep, value = text.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def apply(client: Any, found: Plan) -> Plan:
    """Remove what ``found`` says (containers first); what the engine refuses goes to ``failed``."""
    import docker

    done = Plan(kept=list(found.kept))
    for item in found.remove:
        for ref in item.refs:
            try:
                if item.kind == "container":
                    client.api.remove_container(ref)
                else:  # a tag at a time: the last one removes the image
                    client.api.remove_image(ref)
            except docker.errors.NotFound:
                continue  # gone already
            except docker.errors.APIError as exc:
                item.error = str(exc.explanation or exc)
                break
        (done.failed if item.error else done.remove).append(item)
    return done
