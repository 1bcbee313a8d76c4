"""make bench: every figure of issue 22 in one table, Passerelle beside the reference app (same
load generator, alternating rounds) or beside its target. `--seconds` and `--rounds` shorten it.

`--check` (make bench-check): exits 1 when an orientation ratio falls below 0.7 or national
statistics take more than 1 s.

Usage: python -m bench [--seconds 5] [--rounds 3] [--referrals 1000000] [--only SECTION]
       [--check]"""

import argparse
import sys
import tempfile
from pathlib import Path

from bench import load, orientations, stats
from bench.table import Table
from tests.pgserver import postgres_server

SECTIONS = ("sqlite", "postgresql", "pages", "statistics")
MIN_RATIO = 0.7
MAX_NATIONAL_MS = 1000


def failures(table: Table) -> list[str]:
    found = []
    for name, value in table.checks.items():
        if name.startswith("ratio ") and value < MIN_RATIO:
            found.append(f"{name[6:]}: {value:.2f}× the reference (at least {MIN_RATIO})")
        if name.startswith("ms ") and value > MAX_NATIONAL_MS:
            found.append(f"{name[3:]}: {value:,.0f} ms (at most {MAX_NATIONAL_MS:,} ms)")
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--referrals", type=int, default=1_000_000)
    parser.add_argument("--only", action="append", choices=SECTIONS)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    only = set(args.only or SECTIONS)
    table = Table()
    with tempfile.TemporaryDirectory(prefix="passerelle-bench-") as name:
        tmp = Path(name)
        if "sqlite" in only:
            orientations.sqlite(table, tmp, args.seconds, args.rounds)
        if "postgresql" in only:
            with postgres_server("max_connections=200") as (host, port):
                orientations.postgresql(table, tmp, host, port, args.seconds, args.rounds)
        if "pages" in only:
            load.web_pages(tmp, table)
        if "statistics" in only:
            stats.national(
                table, args.referrals, stats.SHARED / "places" / "lieux-consolides-v1.csv"
            )
    table.save()
    table.print()
    if args.check:
        failed = failures(table)
        for failure in failed:
            print(f"bench-check: {failure}")
        if failed:
            sys.exit(1)
        print("bench-check: every checked figure within its bound")


if __name__ == "__main__":
    main()
