"""Named errors and the framework-free core: each problem's slug declared by one class, the
OpenAPI document listing per route the problems it may answer, and the services and the domain
importable without FastAPI or Starlette."""

import ast
import json
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

import app.main  # noqa: F401 - loads every module that declares a Problem
from app import problems
from app.problems import TITLES, Problem

APP = Path(__file__).resolve().parent.parent / "app"

# Modules of app/services that cannot avoid the web framework, and why. Sign-in with OpenID
# Connect is Authlib's Starlette client: the module takes no request, but importing Authlib's
# client imports Starlette's data structures.
FRAMEWORK_BOUND = {"app.services.oidc": "Authlib's Starlette OAuth client"}

_IMPORT_ALL = """
import importlib, json, pkgutil, sys
import app.notifications, app.places, app.services, app.triage
skipped = set(json.loads(sys.argv[1]))
names = ["app.triage", "app.services", "app.notifications", "app.places"]
for package in (app.services, app.triage, app.notifications, app.places):
    for found in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        names.append(found.name)
seen = []
for name in names:
    if name in skipped:
        continue
    importlib.import_module(name)
    seen.append(name)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("fastapi", "starlette"))
    if loaded:
        print(json.dumps({"culprit": name, "loaded": loaded[:5], "seen": seen}))
        sys.exit(0)
print(json.dumps({"culprit": None, "seen": seen}))
"""


def _all_subclasses(cls: type[Problem]) -> list[type[Problem]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_all_subclasses(sub)]
    return found


def test_services_triage_and_domain_packages_load_no_web_framework() -> None:
    # A fresh interpreter: this one has FastAPI loaded by the app under test. Every module
    # under app/services, app/triage and the notifications and places packages, found by
    # pkgutil, so that a new one is covered.
    answer = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, json.dumps(sorted(FRAMEWORK_BOUND))],
        capture_output=True,
        text=True,
        check=True,
        cwd=APP.parent,
    )
    found = json.loads(answer.stdout.strip().splitlines()[-1])
    assert found["culprit"] is None, found
    assert "app.services.lifecycle" in found["seen"] and "app.triage.rules" in found["seen"]
    assert "app.notifications.outbox" in found["seen"] and "app.places.service" in found["seen"]
    assert len(found["seen"]) >= 30
    for name in FRAMEWORK_BOUND:  # an exemption names a module that exists
        assert (APP.parent / (name.replace(".", "/") + ".py")).exists(), name


def test_every_slug_is_declared_by_exactly_one_class() -> None:
    declared: dict[str, list[str]] = {}
    for cls in _all_subclasses(Problem):
        slug = cls.__dict__.get("slug")
        if slug is not None:
            declared.setdefault(slug, []).append(cls.__qualname__)
        assert cls.status in TITLES, cls  # a title of its own, never the generic "Erreur"
    assert {s: c for s, c in declared.items() if len(c) > 1} == {}
    assert {"acces-refuse", "donnees-invalides", "transition-refusee", "version-perimee"} <= set(
        declared
    )
    assert problems.TransitionRefused.status == 409
    assert problems.VersionMismatch.status == 412
    assert problems.AccessDenied.status == 403
    assert problems.InvalidData.status == 422
    assert problems.NotFound.status == 404


def test_no_slug_is_retyped_in_app() -> None:
    """No `slug="…"` argument, no comparison with a slug, no slug string outside the class
    that declares it: a raise names its class."""
    slugs = {cls.__dict__["slug"] for cls in _all_subclasses(Problem) if "slug" in cls.__dict__}
    retyped: list[str] = []
    for path in sorted(APP.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(APP.parent)
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "slug":
                if isinstance(node.value, ast.Constant):
                    retyped.append(f"{where}:{node.value.lineno} slug={node.value.value!r}")
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value in slugs
                and path.name != "problems.py"
            ):
                retyped.append(f"{where}:{node.lineno} {node.value!r}")
    assert retyped == []


def test_openapi_lists_the_problems_of_each_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    def declared(path: str, method: str) -> dict[str, str]:
        responses = paths[path][method]["responses"]
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert list(response["content"]) == ["application/problem+json"], status
        return {s: r["description"] for s, r in responses.items() if s.startswith(("4", "5"))}

    move = declared("/v1/referrals/{referral_id}/events", "post")
    assert {"401", "403", "404", "409", "412", "422", "429"} <= set(move)
    assert "`transition-refusee`" in move["409"] and "`version-perimee`" in move["412"]
    assert "`acces-refuse`" in move["403"] and "`donnees-invalides`" in move["422"]

    reorient = declared("/v1/referrals/{referral_id}/reorient", "post")
    assert "412" not in reorient
    for slug in ("transition-refusee", "deja-reorientee", "aucun-lieu"):
        assert f"`{slug}`" in reorient["409"]

    orientation = declared("/v1/orientations", "post")
    assert "409" not in orientation and "412" not in orientation
    assert "`idempotence`" in orientation["422"] and "`donnees-invalides`" in orientation["422"]

    referrals = declared("/v1/referrals", "get")
    assert "`curseur-invalide`" in referrals["400"] and "404" in referrals

    assert "`indisponible`" in declared("/readyz", "get")["503"]
    assert set(declared("/v1/webhooks/{webhook_id}", "delete")) >= {"401", "403", "404"}
