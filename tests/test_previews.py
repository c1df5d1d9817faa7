"""The deploy dialog's previews over REST: next times of schedules, checked as a deploy checks
them, and what a deployment of a notebook or of one of its %%flow cells would hold."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from .servers import Server, ok, start_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("previews"), embedded_worker=False)
    try:
        yield server
    finally:
        server.stop()


def refused(response: httpx.Response, status: int, *fragments: str) -> str:
    assert response.status_code == status, response.text
    message = response.json()["message"]
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_next_times_of_a_cron_schedule_in_its_time_zone(srv: Server) -> None:
    body = {
        "schedules": [{"kind": "cron", "cron": "0 6 * * *", "timezone": "Europe/Paris"}],
        "after": "2026-03-27T12:00:00+00:00",
    }
    [item] = ok(srv.http("POST", "previews/schedules", json=body))["schedules"]
    assert item["description"] == "cron '0 6 * * *' (Europe/Paris)"
    times = [datetime.fromisoformat(t) for t in item["next_times"]]
    # 06:00 in Paris: 05:00 UTC until the clocks change on March 29, then 04:00 UTC.
    assert [t.strftime("%d %H:%M") for t in times] == [
        "28 05:00",
        "29 04:00",
        "30 04:00",
        "31 04:00",
        "01 04:00",
    ]


def test_interval_and_rrule_schedules_and_a_count(srv: Server) -> None:
    body = {
        "schedules": [{"kind": "interval", "interval": 3600}, {"rrule": "FREQ=WEEKLY;BYDAY=MO"}],
        "count": 2,
    }
    interval, rrule = ok(srv.http("POST", "previews/schedules", json=body))["schedules"]
    assert len(interval["next_times"]) == len(rrule["next_times"]) == 2
    assert "rrule" in rrule["description"]


def test_a_bad_schedule_is_422_saying_what_is_valid(srv: Server) -> None:
    bad = {"schedules": [{"kind": "cron", "cron": "0 25 * * *"}]}
    refused(srv.http("POST", "previews/schedules", json=bad), 422, "hour field '25'", "0-23")
    zone = {"schedules": [{"kind": "cron", "cron": "0 6 * * *", "timezone": "Europe/Pariss"}]}
    refused(srv.http("POST", "previews/schedules", json=zone), 422, "Europe/Paris")
    two = {"schedules": [{"interval": 60}, {"kind": "cron", "cron": "nope"}]}
    refused(srv.http("POST", "previews/schedules", json=two), 422, "schedule 2:")


def test_a_schedule_more_often_than_the_server_allows_is_422(srv: Server) -> None:
    body = {"schedules": [{"kind": "interval", "interval": 1}]}
    refused(srv.http("POST", "previews/schedules", json=body), 422, "more often")


def test_a_cell_flow_holds_the_parameters_cell_the_cells_above_and_itself(srv: Server) -> None:
    preview = ok(
        srv.http(
            "POST",
            "previews/deploy",
            json={"path": "repo_info.ipynb", "flow_name": "get_repo_info"},
        )
    )
    assert preview["kind"] == "cell" and preview["kernel_name"] == "python3"
    assert [f["name"] for f in preview["flows"]] == ["get_repo_info", "summarize_repos"]
    assert [c["index"] for c in preview["cells"]] == [1, 2, 3, 4]
    assert preview["cells"][0]["tags"] == ["parameters"]
    assert preview["cells"][-1]["source"].startswith("%%flow get_repo_info")
    assert preview["parameter_schema"]["properties"]["repo_name"] == {
        "type": "string",
        "default": "jupyter/notebook",
    }


def test_a_whole_notebook_holds_every_cell(srv: Server) -> None:
    preview = ok(srv.http("POST", "previews/deploy", json={"path": "repo_info.ipynb"}))
    assert (preview["kind"], preview["flow_name"]) == ("notebook", "repo_info")
    assert [c["index"] for c in preview["cells"]] == list(range(9))


def test_parameters_are_checked_as_a_deploy_checks_them(srv: Server) -> None:
    path = {"path": "repo_info.ipynb", "flow_name": "get_repo_info"}
    ok(srv.http("POST", "previews/deploy", json={**path, "parameters": {"repo_name": "x"}}))
    wrong = {**path, "parameters": {"repo_name": 3}}
    refused(srv.http("POST", "previews/deploy", json=wrong), 422, "repo_name", "string")
    unknown = {**path, "parameters": {"repo": "x"}}
    refused(srv.http("POST", "previews/deploy", json=unknown), 422, "repo_name")


def test_unknown_flows_missing_notebooks_and_paths_outside_the_root(srv: Server) -> None:
    flow = {"path": "repo_info.ipynb", "flow_name": "nope"}
    refused(srv.http("POST", "previews/deploy", json=flow), 404, "get_repo_info")
    refused(srv.http("POST", "previews/deploy", json={"path": "missing.ipynb"}), 404)
    outside = {"path": "../../etc/passwd.ipynb"}
    refused(srv.http("POST", "previews/deploy", json=outside), 422, "outside")


def test_times_near_the_end_of_the_calendar_are_no_error(srv: Server) -> None:
    body = {"schedules": [{"interval": 3600}], "after": "9999-12-31T20:00:00+00:00"}
    [item] = ok(srv.http("POST", "previews/schedules", json=body))["schedules"]
    assert len(item["next_times"]) <= 3
