"""The registries: components of the stack, model providers and built-in tools.

Each list exists once. Settings, the agent schema, the supervisor and the
runner derive what they need from it (standard library only).
"""

from __future__ import annotations

#: The stack's components, in start order (stop runs in reverse).
COMPONENTS = ("temporal", "stigmer-server", "agent-runner")
#: The component a runner host runs; the one that executes agents.
RUNNER = "agent-runner"
API_SERVER = "stigmer-server"
TEMPORAL = "temporal"


#: The runner's exit status when its agent code does not import (a broken image, install
#: or, with ``--dev``, source): starting it again cannot help, so the supervisor marks
#: it failed at once, with the line the runner wrote on stderr after :data:`RUNNER_BROKEN_MARK`.
RUNNER_EXIT_BROKEN = 78
RUNNER_BROKEN_MARK = "stigmer-runner: the agent's code does not load: "


def runner_name(replica: int) -> str:
    """The component name of a host's ``replica``-th runner: agent-runner, agent-runner-2, ..."""
    return RUNNER if replica == 1 else f"{RUNNER}-{replica}"


def runner_replica(name: str) -> int | None:
    """The replica number a component name stands for, if it names a runner."""
    if name == RUNNER:
        return 1
    prefix, _, number = name.rpartition("-")
    if prefix == RUNNER and number.isdigit() and not number.startswith("0") and int(number) > 1:
        return int(number)
    return None


class Provider:
    """A model provider an agent names as ``provider:model``.

    ``key_setting``/``key_env``: the setting that holds its API key and the
    environment variable its users know (also read by ``stigmer``). A provider
    with ``base_url_setting`` talks to a server at that URL. (A plain class, not a
    dataclass: every CLI command imports this module; see :class:`stigmer.settings.Key`.)
    """

    __slots__ = (
        "base_url_env",
        "base_url_setting",
        "default_base_url",
        "help",
        "key_env",
        "key_setting",
        "name",
    )

    def __init__(
        self,
        name: str,
        help: str,
        key_setting: str | None = None,
        key_env: str | None = None,
        base_url_setting: str | None = None,
        base_url_env: str | None = None,
        default_base_url: str | None = None,
    ) -> None:
        self.name = name
        self.help = help
        self.key_setting = key_setting
        self.key_env = key_env
        self.base_url_setting = base_url_setting
        self.base_url_env = base_url_env
        self.default_base_url = default_base_url

    def __repr__(self) -> str:
        return f"Provider({self.name!r})"


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider("test", "the offline model that plays spec.test_script"),
        Provider(
            "anthropic",
            "Anthropic's API",
            key_setting="anthropic_api_key",
            key_env="ANTHROPIC_API_KEY",
        ),
        Provider("openai", "OpenAI's API", key_setting="openai_api_key", key_env="OPENAI_API_KEY"),
        Provider(
            "ollama",
            "an Ollama server",
            base_url_setting="ollama_base_url",
            base_url_env="OLLAMA_BASE_URL",
            default_base_url="http://127.0.0.1:11434/v1",
        ),
    )
}

#: The env vars that hold provider keys (never visible to tools, never referenceable as secrets).
PROVIDER_KEY_ENVS = tuple(p.key_env for p in PROVIDERS.values() if p.key_env)


def reserved_secret(name: str) -> bool:
    """Whether ``name`` is stigmer's own variable or a provider key: not for agents' tools.

    An agent may reference one as ``{secret: NAME}`` only where the
    ``reserved_secrets_allowed`` setting names it.
    """
    return name.startswith("STIGMER_") or name in PROVIDER_KEY_ENVS


def parse_model(model: str) -> tuple[str, str]:
    """``provider:model`` into its parts; ``test`` alone is the test model.

    Raises:
        ValueError: no provider, or an unknown one.
    """
    if model == "test":
        return "test", "test"
    provider, sep, name = model.partition(":")
    if not sep or not name:
        raise ValueError(
            f"model {model!r} must be provider:model (providers: {', '.join(PROVIDERS)}), "
            "for example anthropic:claude-sonnet-4-5 or test"
        )
    if provider not in PROVIDERS:
        raise ValueError(f"unknown model provider {provider!r}; providers: {', '.join(PROVIDERS)}")
    return provider, name


class Tool:
    """A built-in workspace tool an agent may name in ``spec.tools``."""

    __slots__ = ("help", "name", "read_only", "runs_commands")

    def __init__(
        self, name: str, help: str, runs_commands: bool = False, read_only: bool = False
    ) -> None:
        self.name = name
        self.help = help
        #: runs programs: in local mode it has the invoking user's full power
        self.runs_commands = runs_commands
        #: changes nothing: a call may run before its ``started`` event is stored
        #: (stigmer.runner.publish); any other call is on record before it runs
        self.read_only = read_only

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool("list_files", "list the files of a workspace folder", read_only=True),
        Tool("read_file", "read a text file of the workspace", read_only=True),
        Tool("write_file", "create or overwrite a workspace file"),
        Tool("edit_file", "replace one exact text in a workspace file"),
        Tool("shell", "run a bash command in the workspace", runs_commands=True),
    )
}
TOOL_NAMES = tuple(TOOLS)
