"""``stigmer token create``: bearer tokens for runner hosts and remote CLIs."""

from __future__ import annotations

import typer

from stigmer.cli._output import JSON_MODE, print_json
from stigmer.client import Client
from stigmer.errors import ConfigError

app = typer.Typer(help="Make bearer tokens for runner hosts and remote CLIs.", no_args_is_help=True)

ROLES = ("runner", "admin")


@app.command("create")
def create(
    role: str = typer.Option(
        ..., "--role", help="runner (may only append events) or admin (everything else)."
    ),
    label: str = typer.Option("", "--label", help="A note kept with it (where it is used)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Print a new token for ROLE; every API server that shares this stack's store accepts it.

    It is shown once and stored only as its SHA-256. Give a runner host its
    token as api_token (STIGMER_API_TOKEN) or in api_token_file.
    """
    JSON_MODE["on"] = json_out
    if role not in ROLES:
        raise ConfigError(f"--role {role!r} is not a role.", "Use --role runner or --role admin.")
    made = Client.resolved().create_token(role, label)
    if json_out:
        print_json(made)
    else:
        print(made["token"])
