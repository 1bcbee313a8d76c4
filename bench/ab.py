"""An A/B of the hot path: POST /v1/orientations on SQLite served by two versions of the code
side by side, under the same wrk, in alternating rounds, so that the machine's own drift (up
to 2× from one hour to the next on the bench's machine) falls on both alike. What a change to
the orientation's path costs or gains, before it lands.

Each version gets its own database, migrated and filled by its own code (every commune, the
demo), and its own token. OLD and NEW are git revisions (NEW: the work tree when omitted);
each revision is checked out in a temporary worktree, with the DSFR copy of this one.

Usage: python -m bench.ab OLD [NEW] [--seconds 5] [--rounds 4] [-c 1 -c 32]"""

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.load import lua_script
from bench.orientations import PASSERELLE, ROOT, Servers, load
from bench.table import Table

DSFR = Path("app/web/static/dsfr")


def checkout(revision: str, where: Path) -> Path:
    """`revision` in a detached worktree at `where` (removed by remove())."""
    subprocess.run(
        ["git", "worktree", "add", "--detach", "-q", str(where), revision], cwd=ROOT, check=True
    )
    (where / DSFR).parent.mkdir(parents=True, exist_ok=True)
    (where / DSFR).symlink_to(ROOT / DSFR)
    return where


def remove(where: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=ROOT, check=False)


def prepare(tree: Path, database: Path) -> str:
    """The tree's own migrations and demo on a fresh database; its agent's token."""
    code = f"from bench.orientations import prepare; print(prepare('sqlite:///{database}'))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("new", nargs="?")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("-c", "--connections", type=int, action="append")
    args = parser.parse_args()
    table = Table()
    with tempfile.TemporaryDirectory(prefix="passerelle-ab-") as name:
        tmp = Path(name)
        trees = {"old": checkout(args.old, tmp / "old")}
        trees["new"] = checkout(args.new, tmp / "new") if args.new else ROOT
        servers: dict[str, Servers] = {}
        scripts: dict[str, Path] = {}
        try:
            for side, tree in trees.items():
                token = prepare(tree, tmp / f"{side}.db")
                scripts[side] = tmp / f"{side}.lua"
                lua_script(scripts[side], token)
                env = {"DATABASE_URL": f"sqlite:///{tmp / side}.db"}
                servers[side] = Servers([PASSERELLE], env, cwd=tree)
            for side in servers:
                load(servers[side], scripts[side], 32, 2)  # warm-up
            for connections in args.connections or [1, 32]:
                runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
                for _ in range(args.rounds):
                    for side in ("old", "new"):
                        runs[side].append(
                            load(servers[side], scripts[side], connections, args.seconds)
                        )
                old, new = (
                    {k: statistics.median(r[k] for r in runs[s]) for k in runs[s][0]}
                    for s in ("old", "new")
                )
                table.add(
                    f"orientation, SQLite, c{connections}, {args.new or 'work tree'} "
                    f"against {args.old}",
                    f"{new['rps']:,.0f}/s, CPU {new['cpu_ms']:.2f} ms, p99 {new['p99']:.0f} ms",
                    f"{old['rps']:,.0f}/s, CPU {old['cpu_ms']:.2f} ms, p99 {old['p99']:.0f} ms",
                    f"{new['rps'] / old['rps']:.2f}× throughput, "
                    f"{new['cpu_ms'] / old['cpu_ms']:.2f}× CPU",
                )
        finally:
            for running in servers.values():
                running.stop()
            for tree in trees.values():
                if tree != ROOT:
                    remove(tree)
    table.print()


if __name__ == "__main__":
    main()
