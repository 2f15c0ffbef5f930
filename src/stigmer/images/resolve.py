"""``ensure_image``: the runner image, local first, else pulled at the CLI's version, else a fix.

Order:

1. ``runner_image`` (``STIGMER_RUNNER_IMAGE``, default ``stigmer-agent-runner:local``)
   present in the engine: use it (warn on version skew or a stale build).
2. Unless offline (``--offline``, ``STIGMER_OFFLINE=1``): pull
   ``runner_registry:<tag>`` (``STIGMER_RUNNER_REGISTRY``, default
   ``ghcr.io/stigmer/agent-runner``) and tag it as the local image. The tag is
   :func:`registry_tag` of the CLI version.
3. Otherwise fail, naming the reference tried and the fix for the cause
   (manifest unknown, unauthorized, rate limited, network, platform, disk).
"""

from __future__ import annotations

import platform
import re
import shlex
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from stigmer import __version__
from stigmer.errors import ImageError
from stigmer.images import buildinfo

DEFAULT_IMAGE = "stigmer-agent-runner:local"
#: key of a pull event that stigmer adds (not the engine): a line saying what is pulled and why
NOTE = "stigmer_note"


def _make_build(ref: str) -> str:
    """The command that builds ``ref`` with its labels (the version, the source digest).

    ``IMAGE=`` names a configured image other than the default; ``-C`` the
    checkout this CLI runs from, so the command works from any folder. A plain
    ``docker build`` would make an image labelled ``0.0.0+unknown``, which then
    warns of version skew.
    """
    root = buildinfo.checkout_root()
    where = f" -C {shlex.quote(str(root))}" if root is not None else ""
    image = "" if ref == DEFAULT_IMAGE else f" IMAGE={shlex.quote(ref)}"
    return f"make{where} build-agent-runner-image{image}"


def build_fix(local: str) -> str:
    """How to build ``local`` (the configured runner image), or run without Docker."""
    if buildinfo.checkout_root() is not None:
        how = (
            f"Build it from this checkout: `{_make_build(local)}` "
            "(or `stigmer server start --rebuild`)."
        )
    else:
        how = (
            "Build it in a clone of the stigmer repository "
            f"(https://github.com/stigmer/stigmer): `{_make_build(local)}`."
        )
    return how + "\nOr run without Docker: `stigmer server start --runner local`."


@dataclass
class ImageReport:
    """What ``ensure_image`` found or did.

    ``source`` is ``local``, ``pulled`` or ``built``; ``size`` is bytes as
    ``docker image inspect`` reports them; ``warnings`` are for the user.
    """

    ref: str
    id: str
    source: str
    version: str | None
    revision: str | None
    size: int
    source_digest: str | None
    registry_ref: str
    stale: bool = False
    #: built from other contract sources (its workflow input or events differ): its
    #: runner cannot run this stack's executions
    incompatible: bool = False
    contract_digest: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_dev_version(version: str) -> bool:
    return bool(re.search(r"(dev|a|b|rc)\d*|\+", version))


def registry_tag(version: str = __version__) -> tuple[str, str | None]:
    """The registry tag for a CLI version, and a note when it is a development build.

    A release ``X.Y.Z`` maps to ``vX.Y.Z``. A development build whose version
    carries a git revision (``X.Y.Z.devN+g<sha>``) maps to ``test-<sha>``, the
    tag the release workflow pushes for every non-release commit. Any other
    development version maps to ``v<version>`` with ``+`` replaced by ``-``.
    """
    m = re.search(r"\+g?([0-9a-f]{7,40})", version)
    if is_dev_version(version):
        if m:
            tag = f"test-{m.group(1)[:7]}"
            return tag, f"development build {version}: using the CI image tag {tag}"
        tag = "v" + version.replace("+", "-")
        return tag, f"development build {version}: trying tag {tag}, which exists only if pushed"
    return f"v{version}", None


def split_ref(ref: str) -> tuple[str, str]:
    """``repo[:tag]`` into (repo, tag); a registry port is not a tag."""
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return repo, tag


def local_report(client: Any, settings: Any, source: str = "local") -> ImageReport | None:
    """Inspect the local image (``images.get``); None if absent. Adds skew/stale warnings."""
    import docker

    ref = settings.runner_image
    try:
        image = client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        raise ImageError(
            f"The engine refused the image reference {ref!r}: {exc.explanation}",
            "Set runner_image (STIGMER_RUNNER_IMAGE) to a valid name:tag.",
        ) from None
    labels = image.labels or {}
    tag, _ = registry_tag()
    report = ImageReport(
        ref=ref,
        id=image.id,
        source=source,
        version=labels.get(buildinfo.LABEL_VERSION),
        revision=labels.get(buildinfo.LABEL_REVISION),
        size=int(image.attrs.get("Size") or 0),
        source_digest=labels.get(buildinfo.LABEL_DIGEST),
        registry_ref=f"{settings.runner_registry}:{tag}",
        contract_digest=labels.get(buildinfo.LABEL_CONTRACT),
    )
    root = buildinfo.checkout_root()
    if report.version != __version__ and root is None:
        # (in a checkout every commit is a version: the source digest below says
        # whether the image is what this checkout builds, and no registry has a
        # local commit's image to pull)
        report.warnings.append(
            f"version skew: {ref} was built for version {report.version or 'unknown'}, "
            f"this CLI is {__version__}. Rebuild it (`{_make_build(ref)}`) or remove it "
            f"(`docker rmi {ref}`) so that {report.registry_ref} is pulled."
        )
    if root is not None:
        want = buildinfo.source_digest(root)
        if report.source_digest != want:
            report.stale = True
            report.warnings.append(
                f"stale image: {ref} was built from other runner sources or another lock file "
                f"than this checkout. Rebuild: `{_make_build(ref)}` or "
                f"`stigmer server start --rebuild`."
            )
    if report.contract_digest is not None:
        report.incompatible = report.contract_digest != buildinfo.contract_digest()
    else:  # built before the label existed: a stale one cannot be trusted to fit
        report.incompatible = report.stale
    return report


def ensure_image(
    client: Any,
    settings: Any,
    *,
    offline: bool = False,
    on_pull: Callable[[dict[str, Any]], None] | None = None,
) -> ImageReport:
    """Make sure the runner image exists locally; see the module doc for the order.

    Raises:
        ImageError: not local, and offline or the pull failed; the message names
            the reference tried, the fix names what to do.
    """
    found = local_report(client, settings)
    if found is not None:
        return found
    local = settings.runner_image
    tag, note = registry_tag()
    if settings.runner_tag:
        tag, note = settings.runner_tag, f"using tag {settings.runner_tag} from runner_tag"
    remote = f"{settings.runner_registry}:{tag}"
    if offline:
        raise ImageError(
            f"The runner image {local} is not present locally, and offline mode forbids pulling {remote}.",
            build_fix(local) + "\nOr drop --offline / STIGMER_OFFLINE to pull it.",
        )
    if on_pull:
        why = f"the runner image {local} is not present locally"
        on_pull({NOTE: f"Pulling {remote}, because {why}" + (f" ({note})." if note else ".")})
    pull(client, remote, on_pull, note, local)
    repo, ltag = split_ref(local)
    client.images.get(remote).tag(repo, ltag)
    report = local_report(client, settings, source="pulled")
    assert report is not None
    if note:
        report.warnings.insert(0, note)
    report.registry_ref = remote
    return report


def pull(
    client: Any,
    remote: str,
    on_pull: Callable[[dict[str, Any]], None] | None,
    note: str | None,
    local: str = "stigmer-agent-runner:local",
) -> None:
    """Pull ``remote`` with per-layer progress events; classify every failure.

    The engine reports most pull failures inside the progress stream, not as an
    HTTP error, so both paths are checked.
    """
    import docker

    repo, tag = split_ref(remote)
    try:
        for event in client.api.pull(repo, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise _classify(client, remote, event.get("error") or "", note, local)
            if on_pull:
                on_pull(event)
    except ImageError:
        raise
    except docker.errors.APIError as exc:
        raise _classify(client, remote, str(exc.explanation or exc), note, local) from None
    except Exception as exc:  # connection dropped mid-pull, and the like
        raise _classify(client, remote, str(exc), note, local) from None


def _platform() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )
    return f"linux/{arch}"


def _classify(client: Any, remote: str, message: str, note: str | None, local: str) -> ImageError:
    low = message.lower()
    local_fix = build_fix(local)
    head = f"Could not pull the runner image {remote}"
    details = message.strip() + (f"\n({note})" if note else "")
    if "no matching manifest" in low or "no match for platform" in low:
        platforms = "unknown"
        try:
            dist = client.api.inspect_distribution(remote)
            platforms = ", ".join(
                f"{p.get('os')}/{p.get('architecture')}"
                + (f"/{p['variant']}" if p.get("variant") else "")
                for p in dist.get("Platforms", [])
            )
        except Exception:
            pass
        return ImageError(
            f"{head}: it has no variant for this platform ({_platform()}); it exists for: {platforms}.",
            local_fix,
            details=details,
        )
    if any(s in low for s in ("unauthorized", "denied", "401", "403", "authentication required")):
        registry = remote.split("/")[0]
        return ImageError(
            f"{head}: the registry refused access (unauthorized).",
            f"Log in: `docker login {registry}` (for ghcr.io, a GitHub token with read:packages). "
            "A new GHCR package is private until its owner makes it public.\n" + local_fix,
            details=details,
        )
    if "toomanyrequests" in low or "rate limit" in low or "429" in low:
        return ImageError(
            f"{head}: the registry is rate limiting pulls.",
            "Wait and retry, log in (`docker login`) for a higher limit, or build locally.\n"
            + local_fix,
            details=details,
        )
    if "no space left" in low:
        return ImageError(
            f"{head}: the Docker engine ran out of disk space.",
            "Free space (`docker system prune`), then retry.",
            details=details,
        )
    if any(s in low for s in ("manifest unknown", "not found", "does not exist", "404")):
        return ImageError(
            f"{head}: the registry has no such image (manifest unknown).",
            local_fix,
            details=details,
        )
    return ImageError(
        f"{head}: the registry could not be reached.",
        "Check your network or proxy. To work without the registry, build the image and use "
        "`--offline` (STIGMER_OFFLINE=1):\n" + local_fix,
        details=details,
    )


def build(
    client: Any, settings: Any, on_output: Callable[[str], None] | None = None
) -> ImageReport:
    """Build the runner image from this checkout (``docker build``, labels stamped), tag it local.

    ``PYTHON_IMAGE`` comes from ``STIGMER_PYTHON_IMAGE`` if set (default in the Dockerfile).

    Raises:
        ImageError: not a source checkout, or the build failed (the last output lines attached).
    """
    import os

    root = buildinfo.checkout_root()
    if root is None:
        raise ImageError(
            "Building the runner image needs a source checkout of stigmer; this is an installed package.",
            f"Clone the repository and run `{_make_build(settings.runner_image)}` there, or let "
            "`stigmer server start` pull the published image.",
        )
    args = buildinfo.build_args(root)
    if os.environ.get("STIGMER_PYTHON_IMAGE"):
        args["PYTHON_IMAGE"] = os.environ["STIGMER_PYTHON_IMAGE"]
    tail: list[str] = []
    for event in client.api.build(
        path=str(root),
        dockerfile="Dockerfile",
        tag=settings.runner_image,
        buildargs=args,
        decode=True,
        rm=True,
        forcerm=True,
    ):
        if "error" in event:
            raise ImageError(
                f"Building {settings.runner_image} failed: {event['error'].strip()}",
                f"Fix the error above, then rerun `{_make_build(settings.runner_image)}`.",
                details="\n".join(tail[-15:]),
            )
        text = event.get("stream") or event.get("status") or ""
        if text.strip():
            tail.append(text.rstrip())
            if on_output:
                on_output(text.rstrip())
    report = local_report(client, settings, source="built")
    assert report is not None
    return report
