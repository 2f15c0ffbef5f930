"""scripts/install.sh with each method it knows (uv tool, pipx, pip in a venv), from a local wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.release.conftest import ROOT, clean_env

INSTALL = ROOT / "scripts" / "install.sh"


def install(
    home: Path, *args: str, path: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    base = clean_env(HOME=str(home), PATH=path or os.environ["PATH"])
    # keep the package caches of the real user: no downloads twice
    for key, default in (("UV_CACHE_DIR", "~/.cache/uv"), ("PIP_CACHE_DIR", "~/.cache/pip")):
        base[key] = os.environ.get(key) or os.path.expanduser(default)
    for key in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "PYTHONPATH"):
        base.pop(key, None)
    return subprocess.run(
        ["sh", str(INSTALL), *args],
        capture_output=True,
        text=True,
        env=base | env,
        cwd=home,
        timeout=900,
    )


def test_uv_tool_method(tmp_path: Path, built_dist: dict[str, Any]) -> None:
    if shutil.which("uv") is None:
        pytest.skip("no uv")
    home = tmp_path / "home"
    home.mkdir()
    out = install(
        home,
        "--wheel",
        str(built_dist["wheel"]),
        UV_TOOL_DIR=str(home / "tools"),
        UV_TOOL_BIN_DIR=str(home / "bin"),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"installing {built_dist['wheel']} with uv" in out.stdout
    exe = home / "bin" / "stigmer"
    assert (
        subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
        == built_dist["version"]
    )
    assert f"installed stigmer {built_dist['version']} at {exe}" in out.stdout
    assert "add " in out.stdout and "to your PATH" in out.stdout


def test_pip_venv_method(tmp_path: Path, built_dist: dict[str, Any]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    out = install(home, "--method", "pip", "--wheel", str(built_dist["wheel"]))
    assert out.returncode == 0, out.stdout + out.stderr
    exe = home / ".local" / "bin" / "stigmer"
    assert exe.is_symlink()
    assert Path(os.readlink(exe)) == home / ".local/share/stigmer/venv/bin/stigmer"
    got = subprocess.run([exe, "--version"], capture_output=True, text=True, cwd=home)
    assert got.stdout.strip() == built_dist["version"]
    # run again: an upgrade in place, not an error
    again = install(home, "--method", "pip", "--wheel", str(built_dist["wheel"]))
    assert again.returncode == 0, again.stderr


def test_pipx_method(tmp_path: Path, built_dist: dict[str, Any]) -> None:
    if shutil.which("uv") is None:
        pytest.skip("no uv to provide pipx")
    tools = tmp_path / "pipx-venv"
    subprocess.run(["uv", "venv", "-q", str(tools)], check=True, env=clean_env())
    subprocess.run(
        ["uv", "pip", "install", "-q", "--python", str(tools / "bin/python"), "pipx"],
        check=True,
        env=clean_env(),
        timeout=300,
    )
    home = tmp_path / "home"
    home.mkdir()
    path = f"{tools / 'bin'}:/usr/local/bin:/usr/bin:/bin"  # pipx, and no uv: pipx is picked
    if shutil.which("uv", path=path):
        pytest.skip("uv is in /usr/bin or /usr/local/bin here: cannot hide it from the script")
    out = install(
        home,
        "--wheel",
        str(built_dist["wheel"]),
        "--python",
        str(tools / "bin" / "python"),
        path=path,
        PIPX_HOME=str(home / "pipx"),
        PIPX_BIN_DIR=str(home / "bin"),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "with pipx" in out.stdout
    exe = home / "bin" / "stigmer"
    got = subprocess.run([exe, "--version"], capture_output=True, text=True, cwd=home)
    assert got.stdout.strip() == built_dist["version"]


def test_refusals(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    cases = [
        (["--wheel", str(tmp_path / "nope.whl")], "no wheel at"),
        (["--version", "1.2"], "--version wants X.Y.Z"),
        (["--version", "1.2.3", "--wheel", "x.whl"], "not both"),
        (["--method", "conda"], "unknown method"),
        (["--frobnicate"], "unknown argument"),
    ]
    for args, message in cases:
        out = install(home, *args)
        assert out.returncode != 0, args
        assert message in out.stderr, (args, out.stderr)
