"""make bench (matching quality): how well the real places of France meet people's needs.

Imports every commune and the consolidated national export of places
(../shared/data/places/lieux-consolides-v1.csv; every médiation place takes referrals) into a
scratch SQLite database, draws people over the communes by population, and for each need
matches them as an orientation would (app.places.service.match_places, the rules of
app.triage.matching). Reports, per need: the share of people with a suitable place within the
referral distance, and how much farther those people travel than to the nearest place with no
constraint (median and 90th percentile, km).

Usage: python -m bench.matching [--people 3000] [--places FILE] [--km 30]"""

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlmodel import Session

from app.db import make_engine, migrate
from app.places.importing import import_places
from app.places.service import match_places
from app.places.sources import read_source
from app.services.commune_reference import read_reference
from app.services.communes import communes, import_reference
from app.triage.needs import HALVES, MODALITIES, SPECIFIC, Day, Half, Modality, Needs, slot

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PASSERELLE_SHARED_DATA", ROOT.parent / "shared" / "data"))

NEEDS: list[tuple[str, Needs]] = [
    ("aucun besoin indiqué", Needs()),
    *((label, Needs(specific=frozenset({slug}))) for slug, (label, _) in SPECIFIC.items()),
    ("gratuit seulement", Needs(free_only=True)),
    *((f"modalité : {MODALITIES[m][0]}", Needs(modality=m)) for m in Modality),
    (
        f"disponible lundi {HALVES[Half.MATIN]}",
        Needs(availability=slot(Day.LUNDI, Half.MATIN)),
    ),
    (
        f"disponible samedi {HALVES[Half.MATIN]}",
        Needs(availability=slot(Day.SAMEDI, Half.MATIN)),
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=3000)
    parser.add_argument("--km", type=float, default=30.0)
    parser.add_argument(
        "--places", type=Path, default=SHARED / "places" / "lieux-consolides-v1.csv"
    )
    args = parser.parse_args()
    if not args.places.exists():
        print(f"matching benchmark skipped: {args.places} is missing (../shared/data)")
        return
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{folder}/matching.db")
        migrate(engine)
        started = time.perf_counter()
        with Session(engine) as session:
            import_reference(session, read_reference())
            report = import_places(session, read_source(args.places), accepts_referrals=True)
        print(
            f"{report.imported} lieux importés, {len(report.rejected)} refusés "
            f"({time.perf_counter() - started:.0f} s)"
        )
        reference = communes(engine)
        inhabited = [c for c in reference.values() if c.population]
        weights = np.array([c.population for c in inhabited], dtype=np.float64)
        rng = np.random.default_rng(2026)
        drawn = rng.choice(len(inhabited), size=args.people, p=weights / weights.sum())
        people = [inhabited[i] for i in drawn]
        with Session(engine) as session:
            base = [match_places(session, c, "caf", args.km, 1).chosen for c in people]
            print(
                f"\n{args.people} personnes tirées selon la population, démarche CAF, "
                f"lieux à {args.km:g} km au plus\n"
            )
            print(
                f"{'besoin':44} {'servis':>8} {'+km médian':>11} {'+km p90':>9} {'ms/orient.':>11}"
            )
            for label, needs in NEEDS:
                t0 = time.perf_counter()
                found = [match_places(session, c, "caf", args.km, 1, needs).chosen for c in people]
                elapsed = (time.perf_counter() - t0) * 1000 / len(people)
                served = [i for i, f in enumerate(found) if f]
                extra = [
                    found[i][0].distance_km - base[i][0].distance_km for i in served if base[i]
                ]
                share = len(served) / len(people)
                median = float(np.median(extra)) if extra else math.nan
                p90 = float(np.percentile(extra, 90)) if extra else math.nan
                print(f"{label:44} {share:8.1%} {median:11.1f} {p90:9.1f} {elapsed:11.2f}")


if __name__ == "__main__":
    main()
