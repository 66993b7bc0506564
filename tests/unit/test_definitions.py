"""Workflow definitions: placeholders are whole argv elements; values cannot become commands or options."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from mahavishnu.orchestrator.workflows.definitions import (
    ParamSpec,
    RetryPolicy,
    WorkflowDefinition,
    builtin_workflows,
    render_argv,
    validate_params,
)
from mahavishnu.platform.errors import InvalidArgumentError

CHECKOUT = WorkflowDefinition(
    argv=("git", "checkout", "{branch}"),
    params={"branch": ParamSpec(pattern=r"[A-Za-z0-9._/-]+")},
)


@pytest.mark.parametrize(
    ("argv", "params", "message"),
    [
        (["{prog}", "x"], {"prog": {}}, r"argv\[0\] must be a fixed program"),
        (["git", "--depth={depth}"], {"depth": {}}, "whole elements"),
        (["git", "{undeclared}"], {}, "no such parameter"),
        (["git", "pre{x}post"], {"x": {}}, "whole elements"),
    ],
)
def test_bad_templates_are_refused(argv: list[str], params: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WorkflowDefinition.model_validate({"argv": argv, "params": params})


def test_values_are_substituted_as_whole_elements() -> None:
    values = validate_params(CHECKOUT, {"branch": "feature/x"})
    assert render_argv(CHECKOUT, values) == ["git", "checkout", "feature/x"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("--upload-pack=touch /tmp/pwned", "must not start with '-'"),
        ("-b", "must not start with '-'"),
        ("main; rm -rf /", "does not match"),
        ("main\nrm -rf /", "does not match"),
        ("main\x00evil", "NUL"),
        (5, "must be a string"),
    ],
)
def test_injection_attempts_are_refused(value: object, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        validate_params(CHECKOUT, {"branch": value})


def test_free_text_prompt_stays_one_inert_element() -> None:
    agent = builtin_workflows(["claude", "-p"])["agent"]
    prompt = "fix it; rm -rf / && echo $(id)\nnext line"
    assert render_argv(agent, validate_params(agent, {"prompt": prompt})) == ["claude", "-p", prompt]
    with pytest.raises(InvalidArgumentError, match="NUL"):
        validate_params(agent, {"prompt": "a\x00b"})
    with pytest.raises(InvalidArgumentError, match="must not start with '-'"):
        validate_params(agent, {"prompt": "--dangerously-skip-permissions"})


def test_unknown_missing_and_typed_parameters() -> None:
    definition = WorkflowDefinition(
        argv=("tool", "{count}", "{flag}"),
        params={
            "count": ParamSpec(type="integer"),
            "flag": ParamSpec(type="boolean", required=False, default=False),
        },
    )
    assert validate_params(definition, {"count": "7"}) == {"count": "7", "flag": "false"}
    assert validate_params(definition, {"count": 3, "flag": True}) == {"count": "3", "flag": "true"}
    with pytest.raises(InvalidArgumentError, match="unknown parameter"):
        validate_params(definition, {"count": 1, "other": 2})
    with pytest.raises(InvalidArgumentError, match="required"):
        validate_params(definition, {})
    with pytest.raises(InvalidArgumentError, match="integer"):
        validate_params(definition, {"count": "seven"})
    with pytest.raises(InvalidArgumentError, match="true or false"):
        validate_params(definition, {"count": 1, "flag": "yes"})


@pytest.mark.parametrize(
    "value", [-5, "-5", "\u0661\u0662", "\uff17", "+5", " 5", "5_000", "0x10", "1" * 31, 1.5]
)
def test_integers_are_plain_ascii_digits_and_not_negative(value: object) -> None:
    """`git log -n {count}` must never receive `-5` (an option) or digits the program reads otherwise."""
    definition = WorkflowDefinition(
        argv=("git", "log", "-n", "{count}"), params={"count": ParamSpec(type="integer")}
    )
    with pytest.raises(InvalidArgumentError, match=r"integer|negative"):
        validate_params(definition, {"count": value})
    assert validate_params(definition, {"count": "007"}) == {"count": "7"}


def test_negative_integers_only_where_the_parameter_allows_them() -> None:
    spec = ParamSpec(type="integer", allow_leading_dash=True)
    definition = WorkflowDefinition(argv=("tool", "--offset", "{offset}"), params={"offset": spec})
    assert validate_params(definition, {"offset": -3}) == {"offset": "-3"}
    assert validate_params(definition, {"offset": "-3"}) == {"offset": "-3"}


@given(st.text(max_size=200))
def test_any_accepted_value_is_exactly_one_argv_element(value: str) -> None:
    agent = builtin_workflows(["claude", "-p"])["agent"]
    try:
        values = validate_params(agent, {"prompt": value})
    except InvalidArgumentError:
        assert "\x00" in value or value.startswith("-")
        return
    assert render_argv(agent, values) == ["claude", "-p", value]


def test_retry_policy_classification() -> None:
    any_failure = RetryPolicy(max_attempts=3)
    assert any_failure.is_retryable(exit_code=1, timed_out=False)
    assert not any_failure.is_retryable(exit_code=0, timed_out=False)
    assert any_failure.is_retryable(exit_code=None, timed_out=True)
    picky = RetryPolicy(max_attempts=3, retry_on_exit_codes=(75,), retry_on_timeout=False)
    assert picky.is_retryable(exit_code=75, timed_out=False)
    assert not picky.is_retryable(exit_code=1, timed_out=False)
    assert not picky.is_retryable(exit_code=None, timed_out=True)


def test_builtins() -> None:
    builtins = builtin_workflows(["qwen", "-p"])
    assert set(builtins) == {"git-status", "git-fetch", "git-pull", "agent"}
    assert builtins["git-pull"].argv == ("git", "pull", "--ff-only")
    assert builtins["agent"].argv == ("qwen", "-p", "{prompt}")
