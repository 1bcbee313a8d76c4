"""No input may cause a 500: random bodies, paths and queries through the real app."""

import json
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from tests.conftest import World, count, orientation_body

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    ("assessment",),
    ("assessment", "profile"),
    ("assessment", "answers"),
    ("procedure",),
    ("procedure", "theme"),
    ("procedure", "urgent"),
    ("already_followed",),
    ("person",),
    ("person", "commune"),
    ("person", "consent"),
    ("person", "first_name"),
    ("person", "phone"),
    ("person", "email"),
    ("person", "availability"),
]
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _set(body: dict, path: tuple[str, ...], value: object) -> dict:  # type: ignore[type-arg]
    target = body
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            return body
        target = target[key]
    target[path[-1]] = value
    return body


@FUZZ
@given(field=st.sampled_from(FIELDS), value=json_values)
@pytest.mark.usefixtures("engine")
def test_mutated_orientations_never_fail(
    client: TestClient, world: World, field: tuple[str, ...], value: object
) -> None:
    body = _set(json.loads(json.dumps(orientation_body())), field, value)
    response = client.post("/v1/orientations", json=body, headers=world.auth("agent_tulle"))
    assert response.status_code in (201, 422), response.text
    if response.status_code == 422:
        assert response.headers["content-type"] == "application/problem+json"


@FUZZ
@given(body=json_values)
def test_arbitrary_json_never_fails(
    client: TestClient, world: World, engine: Engine, body: object
) -> None:
    before = count(engine, "orientation")
    response = client.post("/v1/orientations", json=body, headers=world.auth("agent_tulle"))
    assert response.status_code == 422, response.text
    assert count(engine, "orientation") == before


@FUZZ
@given(segment=st.text(min_size=1, max_size=30), query=st.text(max_size=30))
def test_arbitrary_ids_and_queries_never_fail(
    client: TestClient, world: World, segment: str, query: str
) -> None:
    segment = quote(segment, safe="")
    for path, params, who in (
        (f"/v1/referrals/{segment}", {}, "med_tulle"),
        (f"/v1/referrals/by-code/{segment}", {}, "med_tulle"),
        (f"/v1/orientations/{segment}", {}, "agent_tulle"),
        (f"/v1/places/{segment}", {}, "agent_tulle"),
        ("/v1/referrals", {"cursor": query, "status": query}, "med_tulle"),
        ("/v1/places", {"near": query, "service": query, "kind": query}, "coord"),
    ):
        response = client.get(path, params=params, headers=world.auth(who))
        assert response.status_code < 500, (path, params, response.text)
