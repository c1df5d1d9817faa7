"""Base job templates: defaults, checking, merging, rendering and redaction of job variables."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from nbflows.errors import InvalidInput
from nbflows.workers.host_access import host_access_problems
from nbflows.workers.job_templates import (
    DEFAULT_TEMPLATES,
    check_job_variables,
    default_base_job_template,
    merge_job_variables,
    pool_types,
    render_job_configuration,
    validate_base_job_template,
)
from nbflows.workers.redaction import REDACTED, redact

PROCESS_VARIABLES = {
    "command",
    "env",
    "working_dir",
    "timeout",
    "kernel_name",
    "stream_output",
    "log_limit",
    "labels",
}
DOCKER_VARIABLES = {
    "image",
    "command",
    "env",
    "volumes",
    "network_mode",
    "mem_limit",
    "cpus",
    "auto_remove",
    "image_pull_policy",
    "labels",
    "privileged",
    "timeout",
    "stream_output",
    "base_image",
}


def pinned_privileged_template() -> dict[str, Any]:
    """A docker template whose admin pinned privileged=False by removing it from the variables."""
    template = default_base_job_template("docker")
    del template["variables"]["properties"]["privileged"]
    template["job_configuration"]["privileged"] = False
    return template


# --- defaults ------------------------------------------------------------------------------------


def test_pool_types_and_declared_variables() -> None:
    assert {"process", "docker"} <= set(pool_types())
    process = default_base_job_template("process")["variables"]["properties"]
    docker = default_base_job_template("docker")["variables"]["properties"]
    assert set(process) == PROCESS_VARIABLES
    assert set(docker) == DOCKER_VARIABLES


@pytest.mark.parametrize("pool_type", ["process", "docker"])
def test_default_templates_are_valid_and_documented(pool_type: str) -> None:
    template = default_base_job_template(pool_type)
    assert validate_base_job_template(template) == template
    for name, schema in template["variables"]["properties"].items():
        assert schema.get("title"), name
        assert schema.get("description"), name


def test_process_defaults() -> None:
    assert merge_job_variables(default_base_job_template("process")) == {
        "command": None,
        "env": {},
        "working_dir": None,
        "timeout": None,
        "kernel_name": None,
        "stream_output": True,
        "log_limit": 10000,
        "labels": {},
    }


def test_docker_defaults() -> None:
    assert merge_job_variables(default_base_job_template("docker")) == {
        "image": None,
        "command": None,
        "env": {},
        "volumes": [],
        "network_mode": None,
        "mem_limit": None,
        "cpus": None,
        "auto_remove": True,
        "image_pull_policy": "IfNotPresent",
        "labels": {},
        "privileged": False,
        "timeout": None,
        "stream_output": True,
        "base_image": None,
    }


def test_default_template_is_a_deep_copy() -> None:
    template = default_base_job_template("docker")
    template["variables"]["properties"]["env"]["default"]["LEAK"] = "x"
    template["job_configuration"]["image"] = "pinned"
    assert DEFAULT_TEMPLATES["docker"]["variables"]["properties"]["env"]["default"] == {}
    assert DEFAULT_TEMPLATES["docker"]["job_configuration"]["image"] == "{{ image }}"
    # The two pool types share no objects either.
    assert merge_job_variables(default_base_job_template("process"))["env"] == {}


def test_unknown_pool_type_lists_valid_types() -> None:
    with pytest.raises(InvalidInput) as info:
        default_base_job_template("kubernetes")
    assert "'kubernetes'" in info.value.message
    assert "process, docker" in info.value.message
    assert info.value.status == 422


# --- merging -------------------------------------------------------------------------------------


def test_merge_order_later_layer_wins_and_none_is_skipped() -> None:
    template = default_base_job_template("docker")
    deployment = {"image": "sales:1", "timeout": 60, "volumes": ["/data:/data:ro"]}
    run = {"timeout": 5.5, "volumes": ["/tmp:/scratch"]}
    merged = merge_job_variables(template, deployment, None, run)
    assert merged["image"] == "sales:1"
    assert merged["timeout"] == 5.5
    assert merged["volumes"] == ["/tmp:/scratch"]  # lists are replaced, not concatenated
    assert merged["image_pull_policy"] == "IfNotPresent"
    assert deployment == {"image": "sales:1", "timeout": 60, "volumes": ["/data:/data:ro"]}


def test_env_and_labels_merge_key_by_key() -> None:
    template = default_base_job_template("process")
    template["variables"]["properties"]["env"]["default"] = {"POOL": "1", "SHARED": "pool"}
    deployment = {"env": {"SHARED": "deployment", "DEPLOYMENT": "1"}, "labels": {"team": "a"}}
    run = {"env": {"SHARED": "run"}, "labels": {"attempt": "2"}}
    merged = merge_job_variables(template, deployment, run)
    assert merged["env"] == {"POOL": "1", "SHARED": "run", "DEPLOYMENT": "1"}
    assert merged["labels"] == {"team": "a", "attempt": "2"}
    assert template["variables"]["properties"]["env"]["default"] == {"POOL": "1", "SHARED": "pool"}


def test_unknown_variable_is_refused_with_the_allowed_list() -> None:
    template = default_base_job_template("process")
    with pytest.raises(InvalidInput) as info:
        merge_job_variables(template, {"timeout": 1}, {"imag": "x", "cpu": 2})
    message = info.value.message
    assert "unknown job variable(s) 'cpu', 'imag'" in message
    assert (
        "allowed variables: command, env, kernel_name, labels, log_limit, stream_output, "
        "timeout, working_dir" in message
    )
    assert info.value.details["unknown"] == ["cpu", "imag"]
    with pytest.raises(InvalidInput, match="unknown job variable"):
        check_job_variables(template, {"image": "x"})


def test_pinned_value_is_refused_and_rendered_as_pinned() -> None:
    template = pinned_privileged_template()
    assert validate_base_job_template(template) == template
    for attempt in (
        lambda: merge_job_variables(template, None, {"privileged": True}),
        lambda: check_job_variables(template, {"privileged": False}),
    ):
        with pytest.raises(InvalidInput) as info:
            attempt()
        assert "'privileged' pinned by the work pool" in info.value.message
        assert "cannot be overridden" in info.value.message
        assert "unknown" not in info.value.message
        assert info.value.details["pinned"] == ["privileged"]
    variables = merge_job_variables(template, {"image": "x"})
    assert "privileged" not in variables
    assert render_job_configuration(template, variables)["privileged"] is False


def test_declared_but_hard_coded_variable_counts_as_pinned() -> None:
    # Setting it would be silently ignored, so it is refused like any pinned value.
    template = default_base_job_template("docker")
    template["job_configuration"]["privileged"] = False
    with pytest.raises(InvalidInput, match="'privileged' pinned by the work pool"):
        check_job_variables(template, {"privileged": True})


def test_type_error_names_variable_expected_type_and_value() -> None:
    template = default_base_job_template("docker")
    with pytest.raises(InvalidInput) as info:
        merge_job_variables(template, {"timeout": "soon"})
    assert info.value.message == (
        "invalid job variables: job variable 'timeout' must be number or null, got 'soon' (str)"
    )
    with pytest.raises(InvalidInput) as info:
        check_job_variables(template, {"env": {"DEBUG": 1}, "privileged": "yes"})
    assert "job variable 'env.DEBUG' must be string, got 1 (int)" in info.value.message
    assert "job variable 'privileged' must be boolean, got 'yes' (str)" in info.value.message
    assert len(info.value.details["errors"]) == 2


def test_enum_and_pattern_errors_say_what_is_valid() -> None:
    template = default_base_job_template("docker")
    with pytest.raises(InvalidInput) as info:
        check_job_variables(
            template,
            {"image_pull_policy": "Sometimes", "mem_limit": "lots", "volumes": ["/data"]},
        )
    message = info.value.message
    assert "'image_pull_policy' must be one of 'Always', 'IfNotPresent', 'Never'" in message
    assert "got 'Sometimes'" in message
    assert "'mem_limit' must be a string matching" in message
    assert "'volumes[0]' must be a string matching" in message


def test_type_error_after_merge_is_caught() -> None:
    template = default_base_job_template("process")
    with pytest.raises(InvalidInput, match=r"'log_limit' must be integer, got 1\.5"):
        merge_job_variables(template, {"log_limit": 100}, {"log_limit": 1.5})


def test_required_variables_are_demanded_only_once_merged() -> None:
    template = default_base_job_template("docker")
    del template["variables"]["properties"]["image"]["default"]
    template["variables"]["required"] = ["image"]
    assert check_job_variables(template, {"timeout": 3}) == {"timeout": 3}
    with pytest.raises(InvalidInput, match="'image' required"):
        merge_job_variables(template, {"timeout": 3})
    assert merge_job_variables(template, {"timeout": 3}, {"image": "x"})["image"] == "x"


def test_job_variables_must_be_an_object() -> None:
    with pytest.raises(InvalidInput, match=r"must be an object.*not list"):
        merge_job_variables(default_base_job_template("process"), ["timeout"])  # type: ignore[arg-type]


# --- rendering -----------------------------------------------------------------------------------


def test_render_keeps_types_and_formats_embedded_placeholders() -> None:
    template = {
        "job_configuration": {
            "command": "{{ command }}",
            "stream_output": "{{ stream_output }}",
            "timeout": "{{timeout}}",
            "name": "nb-{{ image }}-{{ timeout }}",
            "labels": {"pool": "fixed", "image": "{{ image }}"},
            "args": ["--log-limit", "{{ log_limit }}", "--t={{ timeout }}"],
            "working_dir": "{{ working_dir }}",
        },
        "variables": {
            "type": "object",
            "properties": {
                "command": {"type": ["array", "null"], "default": ["papermill", "in.ipynb"]},
                "stream_output": {"type": "boolean", "default": False},
                "timeout": {"type": ["number", "null"]},
                "image": {"type": "string", "default": "sales"},
                "log_limit": {"type": "integer", "default": 50},
                "working_dir": {"type": ["string", "null"]},
            },
        },
    }
    validate_base_job_template(template)
    variables = merge_job_variables(template, {"timeout": 2.5})
    rendered = render_job_configuration(template, variables)
    assert rendered == {
        "command": ["papermill", "in.ipynb"],
        "stream_output": False,
        "timeout": 2.5,
        "name": "nb-sales-2.5",
        "labels": {"pool": "fixed", "image": "sales"},
        "args": ["--log-limit", 50, "--t=2.5"],
        "working_dir": None,  # declared, no default, not set
    }
    rendered["command"].append("mutated")
    assert variables["command"] == ["papermill", "in.ipynb"]
    assert template["job_configuration"]["command"] == "{{ command }}"


def test_render_default_docker_template() -> None:
    template = default_base_job_template("docker")
    variables = merge_job_variables(template, {"image": "sales:1", "env": {"A": "1"}})
    rendered = render_job_configuration(template, variables)
    assert rendered == variables
    assert render_job_configuration(template, {})["image"] is None


def test_render_refuses_undeclared_placeholder() -> None:
    template = {
        "job_configuration": {"name": "run-{{ nope }}"},
        "variables": {"type": "object", "properties": {}},
    }
    with pytest.raises(InvalidInput, match=r"'\{\{ nope \}\}' does not name a declared variable"):
        render_job_configuration(template, {})


# --- validating user templates -------------------------------------------------------------------


def _with(change: Any) -> dict[str, Any]:
    template = default_base_job_template("process")
    change(template)
    return template


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (["job_configuration"], "must be an object with 'job_configuration' and 'variables'"),
        ({"variables": {"type": "object", "properties": {}}}, "missing 'job_configuration'"),
        ({}, "missing 'job_configuration' and 'variables'"),
        (
            _with(lambda t: t.update(variable={})),
            "unexpected key(s) in base job template: 'variable'",
        ),
        (_with(lambda t: t.update(job_configuration=[])), "'job_configuration' must be an object"),
        (_with(lambda t: t.update(variables="schema")), "'variables' must be a JSON schema object"),
        (_with(lambda t: t["variables"].update(type="array")), 'must have "type": "object"'),
        (_with(lambda t: t["variables"].pop("properties")), "must have 'properties'"),
        (
            _with(lambda t: t["variables"]["properties"]["timeout"].update(type="numbr")),
            "not a valid JSON schema at properties/timeout/type",
        ),
        (
            _with(lambda t: t["job_configuration"].update(image="{{ image }}")),
            "placeholder '{{ image }}' in job_configuration.image does not name a declared "
            "variable; declared variables: command, env,",
        ),
        (
            _with(lambda t: t["job_configuration"].update(name="run-{{ flow_run.id }}")),
            "placeholder '{{ flow_run.id }}' in job_configuration.name",
        ),
        (
            _with(lambda t: t["job_configuration"].update(timeout=30)),
            "job_configuration.timeout is hard-coded but 'timeout' is also declared",
        ),
        (
            _with(lambda t: t["variables"]["properties"]["log_limit"].update(default="many")),
            "invalid default(s): job variable 'log_limit' must be integer, got 'many' (str)",
        ),
        (
            _with(lambda t: t["variables"]["properties"].update({"mem-limit": {"type": "string"}})),
            "invalid variable name(s) 'mem-limit'",
        ),
        (
            _with(lambda t: t["variables"].update(required=["image"])),
            "'required' names undeclared variable(s) 'image'",
        ),
    ],
)
def test_validate_base_job_template_refusals(template: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_base_job_template(template)
    assert message in info.value.message


def test_validate_returns_a_copy() -> None:
    template = default_base_job_template("process")
    checked = validate_base_job_template(template)
    checked["job_configuration"]["env"] = {}
    assert template["job_configuration"]["env"] == "{{ env }}"


# --- redaction -----------------------------------------------------------------------------------


def secret_template() -> dict[str, Any]:
    template = default_base_job_template("process")
    properties = template["variables"]["properties"]
    properties["registry_password"] = {"type": "string", "format": "password"}
    properties["api_token"] = {"type": "string", "writeOnly": True}
    properties["db_password"] = {
        "anyOf": [{"type": "string", "format": "password"}, {"type": "null"}]
    }
    for name in ("registry_password", "api_token", "db_password"):
        template["job_configuration"][name] = f"{{{{ {name} }}}}"
    return validate_base_job_template(template)


def test_redact_hides_secret_variables_and_secret_env_entries() -> None:
    template = secret_template()
    variables = merge_job_variables(
        template,
        {
            "registry_password": "s3cr3t-hunter2",
            "api_token": "s3cr3t-t0k",
            "db_password": None,
            "env": {
                "GITHUB_TOKEN": "s3cr3t-ghp",
                "aws_secret_access_key": "s3cr3t-aws",
                "PGPASSWORD": "s3cr3t-pg",
                "gcp_credentials": "s3cr3t-gcp",
                "HOME": "/home/me",
            },
            "working_dir": "/work",
        },
    )
    original = copy.deepcopy(variables)
    shown = redact(variables, template)
    assert shown["registry_password"] == REDACTED
    assert shown["api_token"] == REDACTED
    assert shown["db_password"] is None  # nothing set, nothing to hide
    assert shown["env"] == {
        "GITHUB_TOKEN": REDACTED,
        "aws_secret_access_key": REDACTED,
        "PGPASSWORD": REDACTED,
        "gcp_credentials": REDACTED,
        "HOME": "/home/me",
    }
    assert shown["working_dir"] == "/work"
    assert variables == original
    assert "s3cr3t" not in repr(shown)


def test_secret_values_are_not_echoed_in_errors() -> None:
    template = secret_template()
    with pytest.raises(InvalidInput) as info:
        check_job_variables(template, {"registry_password": 12345, "env": {"MY_KEY": 67890}})
    message = info.value.message
    assert "'registry_password' must be string, got ********" in message
    assert "'env.MY_KEY' must be string, got ********" in message
    assert "12345" not in message
    assert "67890" not in message


# --- docker: host access is refused unless the pool allows it ------------------------------------


def docker_template(**allowances: Any) -> dict[str, Any]:
    """The default docker template with an administrator's hard-coded allowances."""
    template = default_base_job_template("docker")
    template["job_configuration"].update(allowances)
    return validate_base_job_template(template)


@pytest.mark.parametrize(
    ("variables", "refusal"),
    [
        ({"volumes": ["/:/host"]}, "job variable 'volumes' mounts the host path '/'"),
        (
            {"volumes": ["/var/run/docker.sock:/var/run/docker.sock"]},
            "mounts the container engine's socket '/var/run/docker.sock'",
        ),
        ({"volumes": ["/srv/data/../../etc:/x:ro"]}, "mounts the host path '/etc'"),
        ({"privileged": True}, "job variable 'privileged' is true"),
        ({"network_mode": "host"}, "job variable 'network_mode' is 'host'"),
        ({"network_mode": "container:db"}, "shares another container's network"),
    ],
)
def test_host_access_is_refused_by_default(variables: dict[str, Any], refusal: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_job_variables(default_base_job_template("docker"), variables)
    message = info.value.message
    assert refusal in message
    assert "pool administrator allows" in message and "base job template" in message


def test_named_volumes_and_plain_networks_need_no_allowance() -> None:
    template = default_base_job_template("docker")
    for variables in (
        {"volumes": ["cache:/cache", "pip-cache:/root/.cache/pip:ro"]},
        {"network_mode": "none"},
        {"network_mode": "bridge"},
        {"network_mode": "my-network"},
        {"privileged": False},
    ):
        assert check_job_variables(template, variables) == variables


def test_pool_administrator_allows_host_paths_privileged_and_host_network() -> None:
    template = docker_template(
        allowed_host_paths=["/srv/data", "/var/run/docker.sock"],
        allow_privileged=True,
        allow_host_network=True,
    )
    allowed = {
        "volumes": ["/srv/data:/data", "/srv/data/in/depth:/d:ro", "/var/run/docker.sock:/s"],
        "privileged": True,
        "network_mode": "host",
    }
    assert check_job_variables(template, allowed) == allowed
    with pytest.raises(InvalidInput) as info:
        check_job_variables(template, {"volumes": ["/srv/database:/db"]})
    assert (
        "mounts the host path '/srv/database'; allowed: named volumes and host paths under "
        "/srv/data, /var/run/docker.sock" in info.value.message
    )
    # The Docker socket only when listed itself: allowing a parent folder is not enough.
    parent = docker_template(allowed_host_paths=["/var/run"])
    with pytest.raises(InvalidInput, match="the container engine's socket"):
        check_job_variables(parent, {"volumes": ["/var/run/docker.sock:/s"]})
    assert check_job_variables(parent, {"volumes": ["/var/run/lock:/l"]})


def test_symbolic_links_are_judged_where_they_lead_when_resolvable() -> None:
    configuration = {"allowed_host_paths": ["/srv/data"], "volumes": ["/srv/data/root:/host"]}
    assert host_access_problems(configuration) == []
    links = {"/srv/data/root": "/"}
    [problem] = host_access_problems(configuration, resolve=lambda p: links.get(p, p))
    assert "mounts the host path '/srv/data/root' (a link to /)" in problem


@pytest.mark.parametrize(
    ("allowances", "message"),
    [
        (
            {"allow_privileged": "{{ privileged }}"},
            "job_configuration.allow_privileged must be hard-coded",
        ),
        ({"allow_host_network": "yes"}, "allow_host_network must be true or false"),
        ({"allowed_host_paths": ["data"]}, "allowed_host_paths must be a list of absolute paths"),
    ],
)
def test_allowances_must_be_hard_coded_and_typed(allowances: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        docker_template(**allowances)


def test_a_template_whose_own_defaults_reach_the_host_is_refused() -> None:
    template = default_base_job_template("docker")
    del template["variables"]["properties"]["privileged"]
    template["job_configuration"]["privileged"] = True
    with pytest.raises(InvalidInput, match="its defaults job variable 'privileged' is true"):
        validate_base_job_template(template)
    template["job_configuration"]["allow_privileged"] = True
    assert validate_base_job_template(template)["job_configuration"]["privileged"] is True
