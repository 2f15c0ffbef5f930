"""``stigmer ui``: open the web console in the browser, signed in by a one-time link."""

from __future__ import annotations

import sys

import typer

from stigmer.cli._output import JSON_MODE, print_json
from stigmer.client import Client


def ui(
    no_browser: bool = typer.Option(
        False, "--no-browser", help="Print the login link; do not open a browser."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (url, expires_at)."),
) -> None:
    """Open the web console (agents, executions, live runs) on a one-time login link.

    The link works once, within ui_login_ttl seconds (2 minutes); it signs the
    browser in with a session cookie. The API token never appears in it.
    """
    JSON_MODE["on"] = json_out
    made = Client.resolved().create_login_code()
    url, expires = made["url"], made["expires_at"]
    if json_out:
        print_json({"url": url, "expires_at": expires})
        return
    opened = False
    if not no_browser:
        import webbrowser

        try:
            opened = webbrowser.open(url)
        except webbrowser.Error:
            opened = False
    if opened:
        print(
            f"Opened the console in your browser (link valid once, until {expires}). "
            "If no page opened: `stigmer ui --no-browser` prints a link to open yourself."
        )
        return
    if not no_browser:
        print("No browser could be opened here; open this link yourself:", file=sys.stderr)
    print(url)
    print(f"(valid once, until {expires})", file=sys.stderr)
