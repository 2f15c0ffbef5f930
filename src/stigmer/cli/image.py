"""``stigmer image status|pull|build|prune``: the agent-runner image."""

from __future__ import annotations

import sys
from typing import Any

import typer

from stigmer.cli._output import JSON_MODE, print_json
from stigmer.settings import Settings, resolve

app = typer.Typer(
    help="Inspect, pull, build or prune the agent-runner image.", no_args_is_help=True
)


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


class PullProgress:
    """Per-layer pull progress: bars on a TTY, one line per finished layer otherwise."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}
        self.done: set[str] = set()

    def __call__(self, event: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from stigmer.images.resolve import NOTE

        if NOTE in event:  # what is pulled and why: first, before any layer
            print(event[NOTE], file=sys.stderr)
            return
        layer = event.get("id")
        status = event.get("status", "")
        if not layer or (layer.startswith(("v", "sha256")) and ":" in status):
            if status and not self.tty:
                print(status, file=sys.stderr)
            return
        if self.tty:
            self._bar(layer, status, event.get("progressDetail") or {})
        elif status in ("Pull complete", "Already exists") and layer not in self.done:
            self.done.add(layer)
            print(f"  {layer}: {status.lower()}", file=sys.stderr)

    def _bar(self, layer: str, status: str, detail: dict[str, Any]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        if self.progress is None:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.progress.start()
        if layer not in self.tasks:
            self.tasks[layer] = self.progress.add_task(f"{layer} {status}", total=None)
        task = self.tasks[layer]
        total = detail.get("total")
        self.progress.update(
            task, description=f"{layer} {status}", completed=detail.get("current", 0), total=total
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def prepare_runner(settings: Settings, *, rebuild: bool, quiet: bool) -> dict[str, Any] | None:
    """Resolve ``auto`` and, for docker mode, make sure the image exists (pull or build).

    Runs before anything starts, so a missing engine or image leaves nothing behind.
    A stale image (built from other runner sources or another uv.lock than this
    checkout's) is offered for a rebuild on a terminal; without one, it is a warning.
    ``quiet`` silences progress output; warnings always go to stderr.
    Sets ``settings.runner_mode`` to ``docker`` or ``local``.

    ``auto`` becomes ``local`` (with a warning) only when no engine answers, and
    none was named on purpose (DOCKER_HOST, DOCKER_CONTEXT: that one must answer); an
    engine that answers makes it ``docker``, and a missing image then fails the
    start as in docker mode, its fix naming ``--runner local`` as the way
    without Docker.

    Raises:
        DockerNotRunningError: docker mode was asked for and no engine answered.
        ImageError: the image is not local and could not be pulled (or built).
        ConfigError: the docker context named does not exist.
    """
    from stigmer.contract.registry import RUNNER
    from stigmer.errors import DockerNotRunningError, ImageError
    from stigmer.images.engine import connect, resolve_endpoint
    from stigmer.images.resolve import build, ensure_image

    mode = settings.runner_mode
    if mode == "local":
        return None
    try:
        client = connect()
    except DockerNotRunningError as exc:
        # auto does not fall back from an engine named on purpose (DOCKER_HOST,
        # DOCKER_CONTEXT): that is a setting to fix, not a reason to give the tools a
        # host process (a current context an installer set falls back as the default)
        if mode != "auto" or resolve_endpoint().named:
            raise
        warn(f"{exc.message} Using the local runner (a host process) instead.")
        settings.set("runner_mode", "local", settings.sources["runner_mode"] + " (auto: no Docker)")
        return None
    settings.set("runner_mode", "docker", settings.sources["runner_mode"])
    try:
        from stigmer.errors import NameTakenError
        from stigmer.stack.agent_runner_docker import ContainerConflictError, claim_container_name

        try:
            if RUNNER in settings.components:  # a host without a runner starts no container
                claim_container_name(client, settings)
        except ContainerConflictError as exc:
            raise NameTakenError(exc.message, exc.fix) from None
        if rebuild:
            if not quiet:
                print(f"Building {settings.runner_image} ...", file=sys.stderr)
            report = build(client, settings, on_output=None if quiet else _build_line)
        else:
            progress = PullProgress(enabled=not quiet)
            try:
                report = ensure_image(client, settings, offline=settings.offline, on_pull=progress)
            except ImageError as exc:
                # auto falls back to a local runner only when no engine answers: an
                # engine without the image is a fault to fix, and a local runner
                # would quietly give the agents' tools the user's own access
                if "--runner local" not in (exc.fix or ""):
                    exc.fix = (
                        (exc.fix + "\n") if exc.fix else ""
                    ) + "Or run without Docker: `stigmer server start --runner local`."
                raise
            finally:
                progress.close()
            if report.source == "pulled" and not quiet:
                print(f"Pulled {report.registry_ref} and tagged it {report.ref}.", file=sys.stderr)
            # (a host without a runner, `--only temporal,stigmer-server`, runs no image)
            if report.incompatible and not settings.dev and RUNNER in settings.components:
                report = _incompatible(client, settings, report, quiet)
            elif report.stale and settings.dev:
                # the runner runs the checkout's sources: a stale image only matters
                # when its dependencies (uv.lock) changed
                warn(
                    "dev mode: the runner runs this checkout's sources, not the image's; "
                    "after a change of uv.lock rebuild it with `--rebuild`"
                )
            elif report.stale:
                report = _offer_rebuild(client, settings, report, quiet)
        for w in report.warnings:  # stderr, so also under --json
            warn(w)
        return report.to_dict()
    finally:
        client.close()


def _incompatible(client: Any, settings: Settings, report: Any, quiet: bool) -> Any:
    """An image built for another contract: its runner cannot decode this stack's executions.

    On a terminal, offer to rebuild it (the default); otherwise, or when the answer
    is no, the start fails before anything runs (exit 11): every run would stay
    PENDING while the runner fails to read its input.
    """
    from stigmer.cli._output import interactive
    from stigmer.errors import ImageError
    from stigmer.images.resolve import build

    where = "this checkout" if report.stale or report.contract_digest is not None else "this CLI"
    what = (
        f"The runner image {report.ref} was built for another contract than {where} "
        "(the workflow input, the events or the agent spec differ): its runner could not "
        "run any execution of this stack."
    )
    if interactive():
        import typer

        print(what, file=sys.stderr)
        if typer.confirm("Rebuild it now?", default=True, err=True):
            if not quiet:
                print(f"Building {settings.runner_image} ...", file=sys.stderr)
            return build(client, settings, on_output=None if quiet else _build_line)
    from stigmer.images.buildinfo import checkout_root

    raise ImageError(
        what,
        "Rebuild it from this checkout: `stigmer server start --rebuild`."
        if checkout_root() is not None
        else f"Remove it (`docker rmi {report.ref}`) so that {report.registry_ref} is pulled, "
        "or point runner_image at an image of this version.",
    )


def _offer_rebuild(client: Any, settings: Settings, report: Any, quiet: bool) -> Any:
    """A stale image at `server start`: on a terminal, ask whether to rebuild it now or go on.

    Without a terminal nothing is asked: the stale warning goes to stderr with
    the others, and the start goes on with the image.
    """
    from stigmer.cli._output import interactive
    from stigmer.images.buildinfo import LABEL_DIGEST
    from stigmer.images.resolve import build

    if not interactive():
        return report
    import typer

    print(
        f"The runner image {report.ref} is stale: uv.lock or the runner sources of this "
        f"checkout changed since it was built (its {LABEL_DIGEST} label is "
        f"{report.source_digest or 'missing'}), so the runner would run older code.",
        file=sys.stderr,
    )
    if typer.confirm("Rebuild it now? (no: go on with it as it is)", default=True, err=True):
        if not quiet:
            print(f"Building {settings.runner_image} ...", file=sys.stderr)
        return build(client, settings, on_output=None if quiet else _build_line)
    report.warnings = [w for w in report.warnings if not w.startswith("stale image")]
    print(
        f"Going on with the stale image {report.ref} (`stigmer server start --rebuild` "
        "rebuilds it).",
        file=sys.stderr,
    )
    return report


def _build_line(text: str) -> None:
    if text.startswith("Step ") or "Successfully" in text:
        print(f"  {text}", file=sys.stderr)


@app.command()
def status(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The engine endpoint, the local image (version, size, staleness) and the registry reference."""
    from stigmer.images.engine import connect, resolve_endpoint
    from stigmer.images.resolve import local_report, registry_tag

    JSON_MODE["on"] = json_out
    settings = resolve()
    ep = resolve_endpoint()
    client = connect()
    try:
        report = local_report(client, settings)
    finally:
        client.close()
    tag, note = registry_tag()
    tag = settings.runner_tag or tag
    out = {
        "engine": {"host": ep.host, "source": ep.source},
        "image": settings.runner_image,
        "present": report is not None,
        "local": report.to_dict() if report else None,
        "registry_ref": f"{settings.runner_registry}:{tag}",
        "note": note,
    }
    if json_out:
        print_json(out)
        return
    print(f"engine:    {ep.host} ({ep.source})")
    print(f"registry:  {out['registry_ref']}" + (f"  ({note})" if note else ""))
    if report is None:
        print(f"image:     {settings.runner_image}: not present (start pulls it, or build it)")
        return
    print(f"image:     {report.ref}  {report.id[7:19]}  {report.size / 1e6:.0f} MB")
    print(f"version:   {report.version}  revision {report.revision}")
    print(f"stale:     {'yes' if report.stale else 'no'}")
    for w in report.warnings:
        warn(w)


@app.command()
def pull(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Pull the image for this CLI's version from the registry and tag it local."""
    from stigmer.images.engine import connect
    from stigmer.images.resolve import NOTE, local_report, registry_tag, split_ref
    from stigmer.images.resolve import pull as do_pull

    JSON_MODE["on"] = json_out
    settings = resolve()
    tag, note = registry_tag()
    tag = settings.runner_tag or tag
    remote = f"{settings.runner_registry}:{tag}"
    client = connect()
    progress = PullProgress(enabled=not json_out)
    try:
        progress(
            {
                NOTE: f"Pulling {remote}, the image for this CLI's version, to tag it "
                f"{settings.runner_image}" + (f" ({note})." if note else ".")
            }
        )
        do_pull(client, remote, progress, note, settings.runner_image)
        progress.close()
        repo, ltag = split_ref(settings.runner_image)
        client.images.get(remote).tag(repo, ltag)
        report = local_report(client, settings, source="pulled")
    finally:
        progress.close()
        client.close()
    assert report is not None
    report.registry_ref = remote
    if json_out:
        print_json(report.to_dict())
    else:
        print(f"Pulled {remote} and tagged it {report.ref} ({report.size / 1e6:.0f} MB).")


@app.command()
def build(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Build the image from this source checkout and tag it local (as `make build-agent-runner-image`)."""
    from stigmer.images.engine import connect
    from stigmer.images.resolve import build as do_build

    JSON_MODE["on"] = json_out
    settings = resolve()
    client = connect()
    try:
        report = do_build(client, settings, on_output=None if json_out else _build_line)
    finally:
        client.close()
    if json_out:
        print_json(report.to_dict())
    else:
        print(f"Built {report.ref} ({report.size / 1e6:.0f} MB, version {report.version}).")


def _prune_line(item: Any) -> str:
    from stigmer.cli._output import human_size

    size = f", {human_size(item.size)}" if item.kind == "image" else ""
    return f"  {item.kind} {item.name} ({item.short_id}{size}): {item.reason}"


@app.command()
def prune(
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would go; remove nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (needed without a terminal)."),
    label: list[str] = typer.Option(
        [],
        "--label",
        metavar="KEY[=VALUE]",
        help="Only consider images and containers that also carry this label (repeatable).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Remove the runner images and stopped runner containers that stigmer made or pulled.

    Only what carries stigmer's labels: images labelled io.stigmer.source-digest
    whose tags are all in the repository of runner_image or runner_registry (or
    untagged: older builds), and runner containers (io.stigmer.home) that are
    not running. Kept: the configured image (runner_image), any image a
    container still uses, the image of every stack running on this host, and
    the stopped container of a stack that runs. Nothing is removed by force.
    Asks first; without a terminal it needs --yes.
    """
    from stigmer.cli._output import confirm, human_size
    from stigmer.images import prune as pruning
    from stigmer.images.engine import connect

    JSON_MODE["on"] = json_out
    labels = pruning.parse_labels(label)
    settings = resolve()
    client = connect()
    try:
        found = pruning.plan(client, settings, labels)
        listing = "\n".join(
            ["Would remove:" if dry_run else "To remove:"] + [_prune_line(i) for i in found.remove]
        )
        go = bool(found.remove) and not dry_run
        if go:
            what = f"image prune would remove {found.count()} ({human_size(found.size)})"
            go = confirm(
                f"Remove these {found.count()}?",
                yes=yes,
                what=what,
                listing=listing,
                dry_run_flag=True,
            )
            if not go:
                print("Nothing was removed.", file=sys.stderr)
        done = pruning.apply(client, found) if go else found
    finally:
        client.close()
    for i in done.failed:
        warn(f"could not remove {i.kind} {i.name} ({i.short_id}): {i.error}")
    if json_out:
        print_json(done.to_dict(dry_run=not go))
        return
    if not done.remove and not done.failed:
        print("Nothing to remove: no stopped runner container, no unused runner image.")
    elif not go:
        print(listing)
    elif done.remove:
        print("Removed:")
        for i in done.remove:
            print(_prune_line(i))
        print(f"Reclaimed up to {human_size(done.size)} (layers that kept images share stay).")
    if done.kept:
        print("Kept:")
        for i in done.kept:
            print(_prune_line(i))
