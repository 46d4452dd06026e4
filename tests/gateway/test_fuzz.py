"""Fuzzing the gateway: schemathesis against `/openapi.json`, and hypothesis on raw bodies.

No request may cause a 5xx, and every failure must answer `{"error": "<message>"}`.
The API server is in memory and the Moodle probe always succeeds, so generated bodies
that pass validation go all the way to a created ArchiveJob and Secret.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from moodle_archive_operator.archivejob import ArchiveJobSpec
from moodle_archive_operator.gateway import create_app
from tests.gateway.conftest import FakeProbe
from tests.gateway.conftest import settings as gateway_settings
from tests.gateway.fakekube import FakeKube
from tests.unit.request_bodies import v1_body, v7_body

KUBE = FakeKube()
APP = create_app(
    gateway_settings(max_parallel_jobs=1000, queue_size=1000, max_request_bytes=64 * 1024),
    kube_api=KUBE,
    prober=FakeProbe(),
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
CLIENT = TestClient(APP, raise_server_exceptions=False)


def error_body_on_failure(ctx: Any, response: Any, case: Any) -> None:
    if response.status_code >= 400:
        body = json.loads(response.content)
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]


def created_objects_are_valid(ctx: Any, response: Any, case: Any) -> None:
    if response.status_code == 200 and case.method == "POST":
        name = f"archive-{json.loads(response.content)['jobid']}"
        ArchiveJobSpec.model_validate(KUBE.archivejobs[name]["spec"])
        assert KUBE.secrets[f"{name}-token"]["stringData"]["token"]


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_openapi_fuzz(case: Any) -> None:
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            error_body_on_failure,
            created_objects_are_valid,
        ]
    )


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replace(value[head], tuple(rest), new)
    return copy


@st.composite
def mutated_bodies(draw: st.DrawFn) -> tuple[str, Any]:
    route, body = draw(
        st.sampled_from(
            [("/archive", v7_body()), ("/archive/archivingmod_quiz", v1_body())]
        )
    )
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(body)))
        body = _replace(body, path, draw(JSON))
    return route, body


@given(mutated_bodies())
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_mutated_plugin_bodies_never_break_the_gateway(route_and_body: tuple[str, Any]) -> None:
    route, body = route_and_body
    response = CLIENT.post(route, json=body)
    assert response.status_code in (200, 400, 403), response.text
    if response.status_code == 200:
        name = f"archive-{response.json()['jobid']}"
        ArchiveJobSpec.model_validate(KUBE.archivejobs[name]["spec"])
    else:
        assert set(response.json()) == {"error"} and response.json()["error"]
