"""The one table `make bench` prints: each measure beside its reference or its target, and the
figures `make bench-check` judges, kept in a JSON file between the two."""

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

RESULTS = Path(os.environ.get("PASSERELLE_BENCH_RESULTS", "/tmp/passerelle-bench.json"))


@dataclass
class Row:
    measure: str
    passerelle: str
    reference: str = ""  # the reference app's figure, or the target
    verdict: str = ""  # the ratio, or whether the target is met


@dataclass
class Table:
    rows: list[Row] = field(default_factory=list)
    checks: dict[str, float] = field(default_factory=dict)  # what bench-check reads

    def add(self, measure: str, passerelle: str, reference: str = "", verdict: str = "") -> None:
        self.rows.append(Row(measure, passerelle, reference, verdict))
        print(f"  · {measure}: {passerelle}  [{reference}]  {verdict}", flush=True)

    def timed(self, measure: str, ms: float, target_ms: float | None, extra: str = "") -> None:
        """A duration against its target (none: reported only)."""
        figure = f"{ms:,.0f} ms" if ms >= 10 else f"{ms:.1f} ms"
        if extra:
            figure += f", {extra}"
        if target_ms is None:
            self.add(measure, figure)
        else:
            met = "met" if ms < target_ms else f"ABOVE ({ms / target_ms:.1f}×)"
            self.add(measure, figure, f"target < {target_ms:,.0f} ms", met)

    def markdown(self) -> str:
        lines = [
            "| measure | Passerelle | reference app or target | ratio or verdict |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r.measure} | {r.passerelle} | {r.reference} | {r.verdict} |" for r in self.rows
        ]
        return "\n".join(lines)

    def save(self) -> None:
        RESULTS.write_text(
            json.dumps(
                {
                    "date": date.today().isoformat(),
                    "machine": platform.node(),
                    "cpus": os.cpu_count(),
                    "rows": [asdict(r) for r in self.rows],
                    "checks": self.checks,
                },
                indent=1,
            )
        )

    def print(self) -> None:
        print(
            f"\nmake bench, {date.today().isoformat()}, {os.cpu_count()} CPUs "
            f"({RESULTS} keeps it)\n"
        )
        print(self.markdown())
