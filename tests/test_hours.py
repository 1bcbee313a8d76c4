"""Opening hours said in French for the slip."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.places.hours import hours_in_french


@pytest.mark.parametrize(
    ("osm", "french"),
    [
        ("Mo-Fr 09:00-12:00,14:00-17:00", "Du lundi au vendredi : 9h00–12h00 et 14h00–17h00"),
        ("Tu,Th 14:00-17:00", "Mardi, jeudi : 14h00–17h00"),
        (
            "Mo-We 09:30-12:00; Sa 10:00-12:00; Su off; PH off",
            "Du lundi au mercredi : 9h30–12h00 ; Samedi : 10h00–12h00 ; Dimanche : fermé ; "
            "Fermé les jours fériés",
        ),
        ("sur rendez-vous", "sur rendez-vous"),
        ("Mo 9h-12h", "Mo 9h-12h"),
        ("", None),
        (None, None),
    ],
)
def test_hours_in_french(osm: str | None, french: str | None) -> None:
    assert hours_in_french(osm) == french


@given(st.text(max_size=60))
def test_any_text_is_said_or_kept(text: str) -> None:
    said = hours_in_french(text)
    assert (said is None) == (not text.strip())
