"""Opening hours as data: the OSM `opening_hours` of the national schema read by a well-kept
parser (opening-hours-py), as the half-days of a week a place is open. Hours that cannot be
read are unknown, never closed."""

from datetime import datetime, timedelta
from functools import lru_cache

import opening_hours

from app.triage.needs import Day, Half, slot

# A week with no public holiday in France (PH rules then change nothing): 2025-03-10 is a Monday.
_MONDAY = datetime(2025, 3, 10)
# A half-day counts as open when the place is open at any time within it.
_HALF_DAYS = {
    Half.MATIN: (timedelta(hours=8), timedelta(hours=12, minutes=30)),
    Half.APRES_MIDI: (timedelta(hours=13, minutes=30), timedelta(hours=19)),
}
UNKNOWN = None


@lru_cache(maxsize=16384)
def open_slots(hours: str | None) -> int | None:
    """The mask of the half-days the place is open in a usual week; None when the hours are
    missing or cannot be read."""
    if not hours or not hours.strip():
        return UNKNOWN
    try:
        parsed = opening_hours.OpeningHours(hours.strip())
    except Exception:  # the parser's ParserError (untyped in its stubs): not readable
        return UNKNOWN
    mask = 0
    try:
        for number, day in enumerate(Day):
            start_of_day = _MONDAY + timedelta(days=number)
            for half, (begin, end) in _HALF_DAYS.items():
                spans = parsed.intervals(start_of_day + begin, start_of_day + end)
                if any(state == opening_hours.State.OPEN for _, _, state, _ in spans):
                    mask |= slot(day, half)
    except Exception:  # the parser's evaluation errors are its own, and rare: unknown
        return UNKNOWN
    return mask


def readable(hours: str | None) -> bool:
    """Whether hours given can be read (an import reports those it cannot)."""
    return not hours or not hours.strip() or open_slots(hours) is not None
