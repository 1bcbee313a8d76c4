"""Layering rules read off the source with ast (like Polar's lint of its org scope): the pages
import no router, and only app/services/scope.py filters a query by a place's referrals or
orientations, so that no read forgets who may see what."""

import ast
from collections.abc import Iterator
from pathlib import Path

import app

APP = Path(app.__file__).resolve().parent
SCOPE_MODULE = APP / "services" / "scope.py"
# The columns that say whose a row is: a comparison with one of them filters by scope.
SCOPED_COLUMNS = {
    ("Referral", "place_id"),
    ("Referral", "origin_place_id"),
    ("Orientation", "origin_place_id"),
}
FILTERS = {"where", "filter", "having"}


def _module_of(path: Path) -> str:
    return ".".join(path.resolve().relative_to(APP.parent).with_suffix("").parts)


def router_imports(tree: ast.Module, module: str) -> Iterator[int]:
    """Lines that import app.routers (or one of its modules), absolutely or relatively."""
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        if any(name == "app.routers" or name.startswith("app.routers.") for name in names):
            yield node.lineno


def _is_scoped_column(node: ast.expr) -> bool:
    """`Referral.place_id`, or wrapped in `col(...)` as SQLModel code writes it."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "col"
        and len(node.args) == 1
    ):
        node = node.args[0]
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and (node.value.id, node.attr) in SCOPED_COLUMNS
    )


def inline_scope_filters(tree: ast.Module) -> Iterator[int]:
    """Lines of a `.where(` (`.filter(`, `.having(`) whose condition compares a scoped column
    with == or != (also inside and_/or_): a scope written inline. Other uses of the columns
    (grouping by place, `.in_` over a list of places for their capacity) are not scopes."""
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in FILTERS
        ):
            continue
        for condition in [*node.args, *(k.value for k in node.keywords)]:
            for sub in ast.walk(condition):
                if (
                    isinstance(sub, ast.Compare)
                    and all(isinstance(op, ast.Eq | ast.NotEq) for op in sub.ops)
                    and any(_is_scoped_column(side) for side in (sub.left, *sub.comparators))
                ):
                    yield sub.lineno


def scope_comparisons(tree: ast.Module) -> Iterator[int]:
    """Any == or != on a scoped column, filter or not (what the scope module itself holds)."""
    for sub in ast.walk(tree):
        if (
            isinstance(sub, ast.Compare)
            and all(isinstance(op, ast.Eq | ast.NotEq) for op in sub.ops)
            and any(_is_scoped_column(side) for side in (sub.left, *sub.comparators))
        ):
            yield sub.lineno


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(APP.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_the_pages_import_no_router() -> None:
    found = [
        f"{path.relative_to(APP.parent)}:{line}"
        for path, tree in _sources()
        if path.is_relative_to(APP / "web")
        for line in router_imports(tree, _module_of(path))
    ]
    assert found == [], (
        "app.web imports app.routers: what both need belongs in app/services " + ", ".join(found)
    )


def test_no_scope_filter_outside_the_scope_module() -> None:
    found = [
        f"{path.relative_to(APP.parent)}:{line}"
        for path, tree in _sources()
        if path != SCOPE_MODULE
        for line in inline_scope_filters(tree)
    ]
    assert found == [], (
        "a query filtered by place outside app/services/scope.py: use scope_filter or "
        "orientation_scope there " + ", ".join(found)
    )


def test_the_detectors_see_what_they_refuse() -> None:
    """Neither check can pass for want of looking: each flags a synthetic offender, lets the
    legitimate forms through, and the scope module's own rules are what it would flag."""
    offending = ast.parse(
        "a = session.exec(select(Referral).where(Referral.id == x,\n"
        "    col(Referral.place_id) == principal.place_id))\n"
        "b = select(Orientation).where(and_(Orientation.id == y,\n"
        "    Orientation.origin_place_id == me.place_id))\n"
        "c = query.filter(principal.place_id != col(Referral.origin_place_id))\n"
    )
    assert sorted(inline_scope_filters(offending)) == [2, 4, 5]
    allowed = ast.parse(
        "select(Referral).where(Referral.id == x, scope_filter(principal))\n"
        "select(Referral.place_id).where(col(Referral.place_id).in_(limited))\n"
        "select(Place).join(Referral, col(Place.id) == col(Referral.place_id))\n"
        "ok = referral.place_id == link.place_id\n"
    )
    assert list(inline_scope_filters(allowed)) == []
    scope = ast.parse(SCOPE_MODULE.read_text(encoding="utf-8"))
    # The médiateur's, the agent's and the orientation's rules.
    assert len(list(scope_comparisons(scope))) == 3

    for source in (
        "from app.routers.stats import coverage_csv\n",
        "from app.routers import stats\n",
        "import app.routers.stats as api\n",
        "from app import routers\n",
        "from ..routers.stats import coverage_csv\n",
    ):
        assert list(router_imports(ast.parse(source), "app.web.coordinateur")) == [1], source
    for source in ("from app.services import stats\n", "from .render import page\n"):
        assert list(router_imports(ast.parse(source), "app.web.coordinateur")) == [], source
