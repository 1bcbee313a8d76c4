"""The in-memory place index answers as a plain loop over every place would."""

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from app.models import PlaceKind
from app.places.models import PlaceOut
from app.places.service import PlaceIndex
from app.services.communes import CommuneRef
from app.triage.geo import distance_km

_points = st.tuples(
    st.floats(42.0, 51.0), st.floats(-5.0, 8.0), st.sampled_from(["mediation", "france_services"])
)


@settings(max_examples=200, deadline=None)
@given(
    places=st.lists(_points, min_size=1, max_size=40),
    duplicates=st.integers(0, 5),
    origin=st.tuples(st.floats(42.0, 51.0), st.floats(-5.0, 8.0)),
    limit=st.integers(1, 50),
    max_km=st.none() | st.floats(1, 800),
)
def test_place_index_orders_like_a_plain_loop(
    places: list[tuple[float, float, str]],
    duplicates: int,
    origin: tuple[float, float],
    limit: int,
    max_km: float | None,
) -> None:
    """Nearest first, ties (same building) by id, the limit and the radius: as a loop over
    every place with distance_km would say."""
    places = places + places[:duplicates]  # equal distances
    now = datetime.now(UTC)
    outs = [
        PlaceOut(
            id=f"lieu_{i:03d}",
            name=str(i),
            kind=kind,
            address="",
            postal_code="",
            commune="19272",
            commune_name="",
            latitude=lat,
            longitude=lon,
            services=[],
            phone=None,
            email=None,
            website=None,
            hours=None,
            accepts_referrals=True,
            updated_at=now,
        )
        for i, (lat, lon, kind) in enumerate(places)
    ]
    commune = CommuneRef(
        code="19272", name="Tulle", kind="COM", postal_codes="19000", departement="19",
        region="75", epci="", latitude=origin[0], longitude=origin[1],
    )  # fmt: skip
    found = PlaceIndex(outs).near(commune, kind=PlaceKind.MEDIATION, max_km=max_km, limit=limit)
    expected = sorted(
        (
            (distance_km(origin[0], origin[1], p.latitude, p.longitude), p.id)
            for p in outs
            if p.kind == "mediation"
        ),
    )
    expected = [e for e in expected if max_km is None or e[0] <= max_km][:limit]
    assert [f.place.id for f in found] == [pid for _, pid in expected]
    # Shown to the tenth of a kilometre.
    for shown, (exact, _) in zip(found, expected, strict=True):
        assert abs(shown.distance_km - exact) <= 0.05 + 1e-9
