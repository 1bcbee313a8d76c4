"""The coverage maps through the real app: a département's communes each drawn and named; the
national map light (one path per distance class, outlines simplified for its scale, drawn once
per copy of the reference and compressed); the national GeoJSON simplified for its scale."""

import gzip
import re

import orjson
import pytest
import shapely
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from app.services.cache import invalidate
from app.web import charts
from tests.conftest import World
from tests.test_web import login

# The national page was 3,029,173 bytes (749,016 gzipped) when each commune was a path.
NATIONAL_PAGE_BYTES = 1_000_000
NATIONAL_PAGE_GZIPPED = 400_000


def the_map(page: str) -> str:
    found = re.search(r'<svg class="map".*?</svg>', page, re.S)
    assert found, page[:1000]
    return found[0]


def test_a_departements_map_draws_and_names_each_commune(client: TestClient, world: World) -> None:
    login(client, world, "coord")
    drawn = the_map(client.get("/coordinateur/couverture").text)
    paths = re.findall(r'<path d="([^"]+)" fill="(#[0-9a-f]{6})"><title>([^<]+)</title>', drawn)
    assert len(paths) > 250  # Corrèze: 278 communes
    assert any(title.startswith("Tulle : ") for _, _, title in paths)
    # Relative steps from an absolute start, in tenths of a pixel.
    assert all(re.fullmatch(r"(M\d+ \d+l[-\d ]+z)+", d) for d, _, _ in paths)


def test_the_national_map_is_light(client: TestClient, world: World) -> None:
    login(client, world, "admin")
    answer = client.get("/coordinateur/couverture", headers={"Accept-Encoding": "gzip"})
    assert answer.status_code == 200 and answer.headers["content-encoding"] == "gzip"
    assert answer.num_bytes_downloaded < NATIONAL_PAGE_GZIPPED
    page = answer.text
    assert len(page.encode()) < NATIONAL_PAGE_BYTES
    drawn = the_map(page)
    # One path per distance class, not 34,800: a few elements for the browser to lay out.
    classes = re.findall(r'<path fill="(#[0-9a-f]{6})" style="stroke:\1;[^"]*" d="', drawn)
    assert 1 <= len(classes) <= 5 and len(set(classes)) == len(classes)
    assert drawn.count("<path") == len(classes)
    titles = re.findall(r"<title>([^<]+ : [\d\u202f]+ communes)</title>", drawn)
    counted = sum(int(re.sub(r"\D", "", t.rpartition(" : ")[2])) for t in titles)
    mainland = re.search(r"<desc[^>]*>(\d+) communes", drawn)
    assert mainland and counted == int(mainland[1]) > 34_000  # every mainland commune
    assert "Corse" not in drawn and "Paris" not in drawn  # no name per commune at this scale


def test_the_national_outlines_are_drawn_once_per_copy_of_the_reference(
    client: TestClient, world: World, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[int] = []
    original = charts.outlines

    def counting(geometries: object, width: int = 720) -> charts.Outlines:
        drawn.append(len(geometries))  # type: ignore[arg-type]
        return original(geometries, width)  # type: ignore[arg-type]

    monkeypatch.setattr(charts, "outlines", counting)
    login(client, world, "admin")
    first = the_map(client.get("/coordinateur/couverture").text)
    second = the_map(client.get("/coordinateur/couverture?km=10").text)
    assert len(drawn) == 1 and drawn[0] > 34_000
    assert first != second  # the same outlines, coloured for another distance
    # The reference changed (an import bumps its version): drawn again from the new copy.
    invalidate(engine, "commune")
    assert the_map(client.get("/coordinateur/couverture?km=10").text) == second
    assert len(drawn) == 2


def test_the_national_geojson_is_simplified_for_its_scale(client: TestClient, world: World) -> None:
    admin = world.auth("admin")
    national = client.get("/v1/stats/coverage?format=geojson", headers=admin)
    assert national.status_code == 200
    assert len(national.content) < 18_000_000  # 28 MB with the stored outlines
    document = orjson.loads(national.content)
    features = {f["id"]: f for f in document["features"]}
    assert len(features) > 34_000
    one = client.get("/v1/stats/coverage?format=geojson&territory=commune:19272", headers=admin)
    near = orjson.loads(one.content)["features"][0]
    coarse = shapely.from_geojson(orjson.dumps(features["19272"]["geometry"]))
    fine = shapely.from_geojson(orjson.dumps(near["geometry"]))
    assert coarse.is_valid
    assert shapely.get_num_coordinates(coarse) < shapely.get_num_coordinates(fine)
    assert coarse.hausdorff_distance(fine) < 0.01  # within a kilometre
    assert features["19272"]["properties"] == near["properties"]
    assert len(gzip.compress(national.content)) < len(national.content) / 3
