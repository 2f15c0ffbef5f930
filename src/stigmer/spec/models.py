"""The agent schema, validated with pydantic.

```yaml
apiVersion: stigmer.ai/v1
kind: Agent
metadata:
  name: folder-summarizer          # a slug: lowercase letters, digits, dashes
spec:
  description: Summarize the files of a folder into a report
  instructions: |
    You summarize ...
  model: anthropic:claude-sonnet-4-5   # provider:model; `test` is the offline model;
                                       # omitted: the `default_model` setting
  tools: [list_files, read_file, write_file, edit_file, shell]
  env:
    REPORT_DIR: reports               # plain value, visible to tools
    GITHUB_TOKEN: {secret: GITHUB_TOKEN}   # resolved from the runner's env at run time
  model_settings: {temperature: 0.2, max_tokens: 2000, timeout: 120}
  base_url: http://127.0.0.1:8000/v1  # optional: any OpenAI-compatible server
  test_script: [...]                  # steps the `test` model plays (see TestStep)
  approval: {tools: [shell, write_file], timeout: 1h, on_timeout: deny}
                                      # these tools' calls wait for a person's decision
```
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from stigmer.contract.registry import TOOL_NAMES, parse_model
from stigmer.spec.hints import did_you_mean

SLUG = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _known_tool(name: str) -> str:
    if name not in TOOL_NAMES:
        raise ValueError(
            f"unknown tool {name!r}{did_you_mean(name, TOOL_NAMES)}; "
            f"tools are: {', '.join(TOOL_NAMES)}"
        )
    return name


#: A tool's name; the schema lists them, so editors complete them.
ToolName = Annotated[
    str, AfterValidator(_known_tool), Field(json_schema_extra={"enum": list(TOOL_NAMES)})
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Strict):
    """``{secret: NAME}``: the value of env var NAME in the runner, read at run time.

    Only the reference is stored; the value never reaches the store or Temporal history.
    """

    secret: Annotated[str, Field(pattern=ENV_NAME.pattern)]


class ModelSettingsSpec(_Strict):
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Field(gt=0)] | None = None
    timeout: Annotated[float, Field(gt=0, description="seconds per model request")] | None = None


class TestStep(_Strict):
    """One turn of the offline ``test`` model.

    Exactly one of:

    * ``tool`` + ``args``: call a tool. String values may use ``{{ last }}`` (the
      previous tool result), ``{{ result.N }}`` (the N-th result, from 0),
      ``{{ all }}`` (every result so far, with headers), ``{{ reads }}`` (every
      file read so far, under its path), ``{{ message }}`` and, with ``each``,
      ``{{ item }}``;
    * ``each``: with ``tool``, call it once per non-empty line of the rendered
      ``each`` (for example ``"{{ last }}"``), all in one turn;
    * ``answer``: the final text (templates allowed).

    A tool step whose call fails (the tool raised an error the model would see,
    or its arguments were refused) ends the run FAILED, naming the step and the
    error, unless the step has ``on_error: continue``: the script then goes on
    to its next step, which sees the error text as the step's result.
    """

    tool: ToolName | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    each: str | None = None
    answer: str | None = None
    #: what a failed call of this step does: ``stop`` (the default: the run fails) or ``continue``
    on_error: Literal["stop", "continue"] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> TestStep:
        if (self.tool is None) == (self.answer is None):
            raise ValueError("a test step has either `tool` (with `args`) or `answer`")
        if self.each is not None and self.tool is None:
            raise ValueError("`each` goes with `tool`")
        if self.on_error is not None and self.tool is None:
            raise ValueError("`on_error` goes with `tool`: an `answer` step cannot fail")
        return self


DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")
DURATION_UNITS = (86400, 3600, 60, 1)
#: The longest an approval may wait (a Temporal timer holds it: no worker, no slot).
MAX_APPROVAL_TIMEOUT_S = 30 * 86400


def duration_seconds(text: str) -> int:
    """``1h``, ``30m``, ``90s``, ``1d``, ``1h30m`` (or a bare number of seconds) in seconds.

    Raises:
        ValueError: not a duration of that form.
    """
    if text.strip().isdigit():
        return int(text)
    m = DURATION.match(text)
    if not m or not any(m.groups()):
        raise ValueError(f"{text!r} is not a duration: write it as 90s, 30m, 1h, 1d or 1h30m")
    return sum(int(g) * unit for g, unit in zip(m.groups(), DURATION_UNITS, strict=True) if g)


class ApprovalSpec(_Strict):
    """``approval: {tools: [shell], timeout: 1h, on_timeout: deny}``.

    A call of a listed tool waits, durably, for a person to approve or deny it
    (``stigmer execution approve|deny``, or the prompt of ``stigmer run``);
    after ``timeout`` (default 1h) ``on_timeout`` decides it (default
    ``deny``). A denied call never runs: the model gets the denial as the
    tool's result and goes on.
    """

    tools: Annotated[list[ToolName], Field(min_length=1)]
    timeout: str = "1h"
    on_timeout: Literal["deny", "approve"] = "deny"

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            v = f"{v}s"
        if isinstance(v, str):
            seconds = duration_seconds(v)
            if not 1 <= seconds <= MAX_APPROVAL_TIMEOUT_S:
                raise ValueError(
                    f"timeout {v!r} is out of range: from 1s to {MAX_APPROVAL_TIMEOUT_S // 86400}d"
                )
        return v

    @property
    def timeout_s(self) -> int:
        return duration_seconds(self.timeout)


class AgentSpec(_Strict):
    description: str = ""
    instructions: Annotated[str, Field(min_length=1)]
    model: str | None = None
    tools: list[ToolName] = Field(default_factory=list)
    env: dict[str, str | SecretRef] = Field(default_factory=dict)
    model_settings: ModelSettingsSpec = Field(default_factory=ModelSettingsSpec)
    base_url: str | None = None
    api_key: SecretRef | None = None
    #: allow `shell` when the runner is a host process (local mode): it then runs as you
    local_shell: bool = False
    test_script: list[TestStep] | None = None
    #: tools whose calls wait for a person's decision; none by default
    approval: ApprovalSpec | None = None

    @field_validator("model")
    @classmethod
    def _model(cls, v: str | None) -> str | None:
        if v is not None:
            parse_model(v)
        return v

    @field_validator("tools")
    @classmethod
    def _tools(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("a tool is listed twice")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            if not ENV_NAME.match(name):
                raise ValueError(f"env name {name!r} is not a valid variable name")
        return v

    @model_validator(mode="after")
    def _script_tools(self) -> AgentSpec:
        for step in self.test_script or []:
            if step.tool and step.tool not in self.tools:
                raise ValueError(f"test_script calls {step.tool!r}, which is not in `tools`")
        if self.approval is not None:
            missing = [t for t in self.approval.tools if t not in self.tools]
            if missing:
                raise ValueError(
                    f"approval lists {', '.join(missing)}, which the agent does not have; "
                    f"its tools are: {', '.join(self.tools) or 'none'}"
                )
        return self


class Metadata(_Strict):
    name: str

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG.match(v):
            raise ValueError(
                "must be a slug: lowercase letters, digits and dashes, 1-63 characters, "
                "starting and ending with a letter or digit"
            )
        return v


class AgentDoc(_Strict):
    """One YAML document: ``apiVersion``, ``kind``, ``metadata``, ``spec``."""

    apiVersion: Literal["stigmer.ai/v1"]
    kind: Literal["Agent"]
    metadata: Metadata
    spec: AgentSpec

    @property
    def name(self) -> str:
        return self.metadata.name
