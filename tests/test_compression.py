"""gzip through the real app: pages, the API's JSON, CSV and GeoJSON, static files, for a
client that asks for it; nothing compressed for one that does not (or says `gzip;q=0`); and
what compression must not break: ETags (304 of static files, If-Match of the API), HEAD,
ranges, small answers, the request guard's refusals and headers."""

import gzip
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.web import DSFR
from tests.conftest import World, orientation_body
from tests.test_web import login

GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}  # httpx asks for gzip unless told otherwise
CSS = "/static/dsfr/dsfr.min.css"


def fetch(
    client: TestClient, url: str, method: str = "GET", **kwargs: object
) -> tuple[httpx.Response, bytes]:
    """The answer and its body as sent (not decoded)."""
    with client.stream(method, url, **kwargs) as answer:
        raw = b"".join(answer.iter_raw())
    return answer, raw


def gzipped(client: TestClient, url: str, **kwargs: Any) -> tuple[httpx.Response, bytes]:
    """Asks with Accept-Encoding: gzip; checks the answer is gzip; returns it, decoded."""
    headers = {**kwargs.pop("headers", {}), **GZIP}
    answer, raw = fetch(client, url, headers=headers, **kwargs)
    assert answer.status_code == 200, raw[:300]
    assert answer.headers["content-encoding"] == "gzip", url
    assert "accept-encoding" in answer.headers["vary"].lower()
    body = gzip.decompress(raw)
    assert len(raw) < len(body)
    return answer, body


def plain(client: TestClient, url: str, **kwargs: Any) -> tuple[httpx.Response, bytes]:
    headers = {**kwargs.pop("headers", {}), **IDENTITY}
    answer, raw = fetch(client, url, headers=headers, **kwargs)
    assert answer.status_code == 200, raw[:300]
    assert "content-encoding" not in answer.headers, url
    return answer, raw


def test_pages_api_downloads_and_static_files_are_gzipped_when_asked(
    client: TestClient, world: World
) -> None:
    login(client, world, "coord")
    coord = world.auth("coord")
    cases = [
        ("/coordinateur/couverture", {}, "text/html"),
        ("/v1/stats/coverage?territory=departement:19", coord, "application/json"),
        ("/v1/stats/coverage?format=csv", coord, "text/csv"),
        ("/coordinateur/couverture.csv", {}, "text/csv"),
        ("/v1/stats/coverage?format=geojson", coord, "application/geo+json"),
        ("/openapi.json", {}, "application/json"),
    ]
    for url, headers, media in cases:
        compressed, body = gzipped(client, url, headers=headers)
        assert compressed.headers["content-type"].startswith(media)
        # The same bytes as sent to a client that does not ask for gzip.
        sent_plain, raw = plain(client, url, headers=headers)
        assert sent_plain.headers["content-type"] == compressed.headers["content-type"]
        if media == "text/html":  # a page carries its own CSRF token: compare its shape only
            assert abs(len(raw) - len(body)) < 100 and raw[:200] == body[:200]
        else:
            assert raw == body, url
        # The guard's headers stay on compressed answers.
        assert compressed.headers["x-content-type-options"] == "nosniff"
        assert compressed.headers["cache-control"] == "no-store"
    # No quality, no gzip; small answers as they are.
    refused, _ = fetch(client, "/openapi.json", headers={"Accept-Encoding": "gzip;q=0, br;q=0"})
    assert refused.status_code == 200 and "content-encoding" not in refused.headers
    small, raw = fetch(client, "/healthz", headers=GZIP)
    assert "content-encoding" not in small.headers and raw.startswith(b"{")


def test_static_files_keep_their_etag_head_and_ranges(client: TestClient) -> None:
    if not (DSFR / "dsfr.min.css").exists():
        pytest.skip("Le DSFR n'est pas installé (make install le copie dans app/web/static).")
    css = (Path(DSFR) / "dsfr.min.css").read_bytes()
    assert len(css) > 500_000  # 728 KB sent raw before compression
    # Streamed by chunks of 64 KiB, each compressed as it goes: the whole file comes back.
    answer, body = gzipped(client, CSS)
    assert body == css
    assert answer.headers["cache-control"] == "public, max-age=86400"
    etag = answer.headers["etag"]
    _, raw = plain(client, CSS)
    assert raw == css
    # Revalidation: 304, whichever the encoding of the copy kept.
    for headers in (GZIP, IDENTITY):
        again, raw = fetch(client, CSS, headers={**headers, "If-None-Match": etag})
        assert again.status_code == 304 and raw == b""
        assert again.headers["etag"] == etag
    # HEAD: the headers without a body.
    head, raw = fetch(client, CSS, "HEAD", headers=GZIP)
    assert head.status_code == 200 and raw == b""
    assert head.headers["etag"] == etag
    # A range is a part of the file as it is: never compressed.
    part, raw = fetch(client, CSS, headers={**GZIP, "Range": "bytes=0-99"})
    assert part.status_code == 206 and "content-encoding" not in part.headers
    assert raw == css[:100]


def test_the_api_is_gzipped_and_its_etags_still_match(client: TestClient, world: World) -> None:
    agent, med = world.auth("agent_tulle"), world.auth("med_tulle")
    created, raw = fetch(
        client, "/v1/orientations", "POST", json=orientation_body(), headers={**agent, **GZIP}
    )
    assert created.status_code == 201 and created.headers["content-encoding"] == "gzip"
    referral = httpx.Response(201, content=gzip.decompress(raw)).json()["referral"]
    answer, _ = gzipped(client, f"/v1/referrals/{referral['id']}", headers=med)
    moved = client.post(
        f"/v1/referrals/{referral['id']}/events",
        json={"status": "acceptee"},
        headers={**med, **GZIP, "If-Match": answer.headers["etag"]},
    )
    assert moved.status_code == 200 and moved.json()["status"] == "acceptee"
    # Without Accept-Encoding, the hot path answers as it always did.
    again, raw = fetch(
        client, "/v1/orientations", "POST", json=orientation_body(), headers={**agent, **IDENTITY}
    )
    assert again.status_code == 201 and "content-encoding" not in again.headers
    assert raw.startswith(b"{")


def test_the_guard_still_refuses_and_explains(client: TestClient, world: World) -> None:
    agent = world.auth("agent_tulle")
    too_large, raw = fetch(
        client,
        "/v1/orientations",
        "POST",
        content=b'{"a": "' + b"x" * 70_000 + b'"}',
        headers={**agent, **GZIP, "Content-Type": "application/json"},
    )
    assert too_large.status_code == 413
    assert too_large.headers["content-type"] == "application/problem+json"
    assert too_large.headers["x-frame-options"] == "DENY"
    problem = httpx.Response(413, content=raw, headers=too_large.headers).json()
    assert "trop volumineux" in problem["detail"]
    wrong_type, _ = fetch(
        client,
        "/v1/orientations",
        "POST",
        content=b"a=b",
        headers={**agent, **GZIP, "Content-Type": "text/plain"},
    )
    assert wrong_type.status_code == 415
