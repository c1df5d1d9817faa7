"""`image_builds`: the deploy dialog's image build, through the REST API of a real server.

What a deploy with an image would refuse is refused before any build starts (4xx naming what
is wrong); a build's output is read by pages (`after`, `wait`) until it ends, and its `image`
is what `POST deployments` takes. The build itself (with a Docker engine) is driven from the
deploy dialog in tests/journeys/test_lab_entry_points.py; here `build: false` only computes the
image's reference, which needs no engine.
"""

from __future__ import annotations

import time

import pytest

from tests.servers import Server, ok

# Computing the reference packs the nbflows under test (a wheel of the source tree).
pytestmark = pytest.mark.slow


def test_image_build_refusals_then_a_reference_deployed(server: Server) -> None:
    ok(server.http("POST", "work_pools", json={"name": "boxes", "type": "docker"}), 201)
    ok(server.http("POST", "work_pools", json={"name": "local", "type": "process"}), 201)
    body = {"path": "trivial.ipynb", "work_pool_name": "boxes", "image": "trivial-flow"}

    def refused(status: int, change: dict[str, object], words: str) -> None:
        answer = server.http("POST", "image_builds", json={**body, **change})
        assert answer.status_code == status, answer.text
        assert words in answer.json()["message"], answer.json()

    refused(422, {"work_pool_name": "local"}, "docker work pool")
    refused(404, {"work_pool_name": "nowhere"}, "nowhere")
    refused(422, {"image": "Not A Name"}, "invalid image name")
    refused(422, {"path": "../outside.ipynb"}, "outside the server's root")
    refused(404, {"path": "missing.ipynb"}, "missing.ipynb")
    refused(404, {"flow_name": "nope"}, "nope")
    refused(422, {"push": "yes"}, "push")
    missing = server.http("GET", "image_builds/no-such-build")
    assert missing.status_code == 404 and "no image build" in missing.json()["message"]

    started = ok(server.http("POST", "image_builds", json={**body, "build": False}), 202)
    assert started["state"] in ("RUNNING", "COMPLETED") and started["lines"]
    lines, after, page = list(started["lines"]), started["next_after"], started
    deadline = time.monotonic() + 120
    while page["state"] == "RUNNING":
        assert time.monotonic() < deadline, "the build never ended"
        page = ok(
            server.http("GET", f"image_builds/{started['id']}", params={"after": after, "wait": 5})
        )
        lines += page["lines"]
        after = page["next_after"]
    assert page["state"] == "COMPLETED", page
    assert any("Not building" in line for line in lines), lines
    image = page["image"]
    assert image["reference"].startswith("trivial-flow:") and image["built"] is False
    # Read again from the start: the same lines.
    again = ok(server.http("GET", f"image_builds/{started['id']}"))
    assert again["lines"] == lines

    deployment = ok(
        server.http(
            "POST",
            "deployments",
            json={
                "path": "trivial.ipynb",
                "name": "boxed",
                "work_pool_name": "boxes",
                "image": image,
            },
        ),
        201,
    )
    assert deployment["image"]["reference"] == image["reference"]
