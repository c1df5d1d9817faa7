"""The server's log, as a user sees it in their terminal: it never shows the token in an nbflows
line (a log is copied into bug reports, CI output and images); only Jupyter's own login URL,
which the user needs to open the browser, carries it."""

from __future__ import annotations

import re

from tests.journeys.conftest import Journey


def test_the_server_log_shows_the_token_only_in_jupyters_login_url(journey: Journey) -> None:
    journey.start()
    journey.cli("work-pool", "create", "my-pool", "--type", "process", check=True)
    journey.cli(
        "deploy", "trivial.ipynb", "--name", "d", "--pool", "my-pool", check=True, cwd=journey.root
    )
    journey.cli("deployment", "run", "trivial/d", "--watch", check=True)
    journey.stop()
    token = journey.token
    login_url = re.compile(
        rf"^(\[I [^\]]*ServerApp\])?\s*https?://[^/\s]+/(lab|tree)?\?token={token}$"
    )
    leaks = [
        line
        for line in journey.log().splitlines()
        if token in line and not login_url.match(line.strip())
    ]
    assert not leaks, "the token is in the server log:\n" + "\n".join(leaks)
