"""Opening hours of the national schema (OSM opening_hours syntax) said in French for a slip."""

import re
from functools import lru_cache

DAYS = {
    "Mo": "lundi",
    "Tu": "mardi",
    "We": "mercredi",
    "Th": "jeudi",
    "Fr": "vendredi",
    "Sa": "samedi",
    "Su": "dimanche",
}
_DAY = "(?:Mo|Tu|We|Th|Fr|Sa|Su)"
_DAYS = re.compile(rf"^{_DAY}(?:-{_DAY})?(?:,{_DAY}(?:-{_DAY})?)*$")
_TIME = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


def _days(spec: str) -> str:
    parts = []
    for chunk in spec.split(","):
        first, _, last = chunk.partition("-")
        parts.append(f"du {DAYS[first]} au {DAYS[last]}" if last else DAYS[first])
    text = ", ".join(parts)
    return text[0].upper() + text[1:]


def _times(spec: str) -> str | None:
    out = []
    for chunk in spec.split(","):
        match = _TIME.match(chunk.strip())
        if not match:
            return None
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        out.append(f"{h1}h{m1:02d}–{h2}h{m2:02d}")
    return " et ".join(out)


@lru_cache(maxsize=4096)
def hours_in_french(hours: str | None) -> str | None:
    """ "Mo-Fr 09:00-12:00,14:00-17:00" -> "Du lundi au vendredi : 9h00–12h00 et 14h00–17h00".
    Anything outside this common subset comes back as written rather than said wrong."""
    if not hours or not hours.strip():
        return None
    rules = []
    for rule in hours.split(";"):
        rule = rule.strip()
        if not rule:
            continue
        days, _, times = rule.partition(" ")
        if rule == "PH off":
            rules.append("Fermé les jours fériés")
            continue
        if not _DAYS.match(days):
            return hours.strip()
        if times.strip() == "off":
            rules.append(f"{_days(days)} : fermé")
            continue
        said = _times(times.strip())
        if said is None:
            return hours.strip()
        rules.append(f"{_days(days)} : {said}")
    return " ; ".join(rules) if rules else hours.strip()
