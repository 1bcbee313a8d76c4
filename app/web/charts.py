"""Charts and the coverage map, drawn by the server as SVG: no script, no map tiles, nothing
fetched from the Internet. Each carries a title and a description for screen readers; the
page gives the same figures as a table."""

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np
import shapely

from app.web.render import number

# DSFR colours: blue France for the data, red Marianne for what is missing.
BLUE = "#000091"
BLUE_LIGHT = "#8585f6"
RED = "#e1000f"
GREY = "#929292"
INK = "#3a3a3a"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude: float = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _svg(width: int, height: int, title: str, desc: str, body: list[str], css: str) -> str:
    key = zlib.crc32(title.encode())  # the same ids at every rendering of the same chart
    return (
        f'<svg class="{css}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="t{key} d{key}" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="t{key}">{escape(title)}</title><desc id="d{key}">{escape(desc)}</desc>'
        + "".join(body)
        + "</svg>"
    )


def bar_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float | None]]],
    title: str,
    desc: str,
) -> str:
    """Grouped vertical bars: one group per label, one bar per series (name, colour, values).
    A withheld value (None) leaves a gap marked « masqué »."""
    width, height, left, bottom, top = 720, 300, 48, 48, 36
    plot_w, plot_h = width - left - 12, height - bottom - top
    shown = [v for _, _, values in series for v in values if v is not None]
    top_value = _nice_max(max(shown, default=0.0))
    group_w = plot_w / max(len(labels), 1)
    bar_w = min(28.0, group_w * 0.8 / max(len(series), 1))
    body: list[str] = []
    for i in range(5):  # horizontal grid and scale
        y = top + plot_h - plot_h * i / 4
        body.append(_grid_line(left, width - 12, y))
        body.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{top_value * i / 4:g}</text>'
        )
    for g, label in enumerate(labels):
        x0 = left + g * group_w + (group_w - bar_w * len(series)) / 2
        for s, (name, colour, values) in enumerate(series):
            value = values[g]
            x = x0 + s * bar_w
            if value is None:
                body.append(
                    f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - 4}" font-size="9" '
                    f'text-anchor="middle" transform="rotate(-90 {x + bar_w / 2:.1f} '
                    f'{top + plot_h - 4})">masqué</text>'
                )
                continue
            h = plot_h * value / top_value
            body.append(
                f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(name)}, {escape(label)} : '
                f"{number(value)}</title></rect>"
            )
        if _labelled(g, len(labels)):
            body.append(
                f'<text x="{left + (g + 0.5) * group_w:.1f}" y="{height - bottom + 16}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    body.extend(_legend([(name, colour) for name, colour, _ in series], left, 16))
    return _svg(width, height, title, desc, body, "chart")


def _labelled(index: int, count: int) -> bool:
    """Every label up to 13 (a year and a month), else about a dozen evenly spaced."""
    return count <= 13 or index % math.ceil(count / 12) == 0


def line_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float | None]]],
    title: str,
    desc: str,
) -> str:
    """Rates (0 to 1) as lines with points; a withheld value breaks the line."""
    width, height, left, bottom, top = 720, 260, 48, 48, 36
    plot_w, plot_h = width - left - 12, height - bottom - top
    step = plot_w / max(len(labels), 1)
    body: list[str] = []
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        body.append(_grid_line(left, width - 12, y))
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{25 * i} %</text>')
    for g, label in enumerate(labels):
        if _labelled(g, len(labels)):
            body.append(
                f'<text x="{left + (g + 0.5) * step:.1f}" y="{height - bottom + 16}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    for name, colour, values in series:
        points: list[str] = []
        for g, value in enumerate(values):
            if value is None:
                if len(points) > 1:
                    body.append(_polyline(points, colour))
                points = []
                continue
            x, y = left + (g + 0.5) * step, top + plot_h - plot_h * value
            points.append(f"{x:.1f},{y:.1f}")
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"><title>'
                f"{escape(name)}, {escape(labels[g])} : {round(100 * value)} %"
                "</title></circle>"
            )
        if len(points) > 1:
            body.append(_polyline(points, colour))
    body.extend(_legend([(name, colour) for name, colour, _ in series], left, 16))
    return _svg(width, height, title, desc, body, "chart")


def _grid_line(x1: float, x2: float, y: float) -> str:
    return f'<line x1="{x1}" x2="{x2}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'


def _polyline(points: list[str], colour: str) -> str:
    return f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" stroke-width="2"/>'


def _legend(entries: list[tuple[str, str]], x: float, y: float) -> list[str]:
    out = []
    for name, colour in entries:
        out.append(f'<rect x="{x:.0f}" y="{y - 10:.0f}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{x + 18:.0f}" y="{y:.0f}">{escape(name)}</text>')
        x += 24 + 7.5 * len(name)
    return out


# --- the coverage map ------------------------------------------------------------------


@dataclass(frozen=True)
class Band:
    label: str
    colour: str
    upto: float | None  # km; None: beyond every band (zone blanche)


def bands(max_km: float) -> list[Band]:
    """Distance classes of the map: near to far in blues, then beyond `max_km` in red, and
    grey where no place receives referrals at all."""
    found = [
        Band(f"{km:g} km ou moins", colour, km)
        for km, colour in ((5, BLUE), (10, "#5858e0"))
        if km < max_km
    ]
    low = found[-1].upto if found else 0
    found.append(
        Band(
            f"de {low:g} à {max_km:g} km" if low else f"{max_km:g} km ou moins", BLUE_LIGHT, max_km
        )
    )
    found.append(Band(f"plus de {max_km:g} km : zone blanche", RED, None))
    return found


def _band_colour(distance: float | None, classes: list[Band]) -> str:
    if distance is None:
        return GREY
    for band in classes:
        if band.upto is None or distance <= band.upto:
            return band.colour
    return RED


# Up to this many communes, a map draws each one, named on hover; beyond (a large région,
# France), each commune is a few pixels wide: one path per distance class.
DETAILED = 3000


@dataclass(frozen=True, slots=True)
class Outlines:
    """A territory's communes projected and simplified for its map: what a map needs besides
    the colours, made once per territory and copy of the reference (app.services.coverage
    keeps them)."""

    width: int
    height: int
    unit: float  # pixels per unit of the paths' integer coordinates
    paths: list[str]  # per commune, its rings as SVG path data; "" for a dot
    dots: list[tuple[int, int] | None]  # per commune drawn as a dot (no outline): where


def outlines(geometries: np.ndarray, width: int = 720) -> Outlines:
    """The communes (WGS 84) projected equirectangular at the territory's mean latitude to fit
    `width` (a tall territory: 900 px of height), and simplified to what the scale can show:
    half a pixel where each commune is drawn; beyond DETAILED communes, a pixel (a commune is
    then a few pixels wide)."""
    bounds = shapely.total_bounds(geometries)
    min_x, min_y, max_x, max_y = (float(b) for b in bounds)
    shrink = math.cos(math.radians((min_y + max_y) / 2))
    span_x, span_y = max((max_x - min_x) * shrink, 1e-6), max(max_y - min_y, 1e-6)
    scale = (width - 20) / span_x
    height = int(span_y * scale) + 20
    if height > 900:  # a tall territory: fit the height instead
        scale, height = 880 / span_y, 900
        width = int(span_x * scale) + 20

    def project(xy: np.ndarray) -> np.ndarray:
        out = np.empty_like(xy)
        out[:, 0] = 10 + (xy[:, 0] - min_x) * shrink * scale
        out[:, 1] = 10 + (max_y - xy[:, 1]) * scale
        return out

    detailed = len(geometries) <= DETAILED
    projected = shapely.transform(geometries, project)
    # Half a pixel where each commune is drawn, a pixel beyond. Without topology: five times
    # faster, and a sliver between two communes at that size is invisible; but a commune
    # that this collapses (a sixth of them at a pixel) is simplified again, keeping it.
    tolerance = 0.5 if detailed else 1.0
    simplified = shapely.simplify(projected, tolerance, preserve_topology=False)
    collapsed = shapely.get_num_coordinates(simplified) < 4
    collapsed &= shapely.get_type_id(projected) != 0  # a point stays a point
    simplified[collapsed] = shapely.simplify(
        projected[collapsed], tolerance, preserve_topology=True
    )
    unit = 0.1 if detailed else 0.5
    points = shapely.get_type_id(simplified) == 0
    dots: list[tuple[int, int] | None] = [None] * len(simplified)
    for i in np.flatnonzero(points).tolist():
        point = simplified[i]
        dots[i] = (round(point.x / unit), round(point.y / unit))
    return Outlines(width, height, unit, _paths(simplified, unit), dots)


def coverage_map(shapes: Outlines, rows: list[dict[str, object]], max_km: float, title: str) -> str:
    """The communes as a choropleth of the distance to the nearest médiation place, as SVG
    paths: each commune its own, named on hover, up to DETAILED communes; beyond, one path per
    distance class (a stroke of its colour closes the slivers between simplified outlines). A
    commune without outline is a dot."""
    classes = bands(max_km)
    detailed = len(rows) <= DETAILED
    unit = shapes.unit
    body: list[str] = [f'<g transform="scale({unit:g})">']  # integer coordinates
    radius = round(2 / unit)
    beyond = 0
    grouped: dict[str, list[str]] = {}
    counted: dict[str, int] = {}
    for path, dot, row in zip(shapes.paths, shapes.dots, rows, strict=True):
        distance = row.get("distance_km")
        colour = _band_colour(distance if isinstance(distance, float | int) else None, classes)
        beyond += colour in (RED, GREY)
        if not detailed:
            counted[colour] = counted.get(colour, 0) + 1
            drawn = grouped.setdefault(colour, [])
            if path:
                drawn.append(path)
            elif dot is not None:  # a dot: a circle as path data
                drawn.append(
                    f"M{dot[0] - radius} {dot[1]}a{radius} {radius} 0 1 0 {2 * radius} 0"
                    f"a{radius} {radius} 0 1 0 {-2 * radius} 0z"
                )
            continue
        far = "aucun lieu" if distance is None else f"{distance:g} km".replace(".", ",")
        tip = f"<title>{escape(str(row.get('name')))} : {far}</title>"
        if path:
            body.append(f'<path d="{path}" fill="{colour}">{tip}</path>')
        elif dot is not None:
            body.append(
                f'<circle cx="{dot[0]}" cy="{dot[1]}" r="{radius}" fill="{colour}">{tip}</circle>'
            )
    names = {band.colour: band.label for band in classes} | {GREY: "aucun lieu"}
    for colour in [band.colour for band in classes] + [GREY]:
        if grouped.get(colour):
            tip = f"{names[colour]} : {number(counted[colour])} communes"
            # Its own colour for the stroke (the stylesheet's white one draws each commune's
            # border, a white mesh at this scale), a pixel wide whatever the map's size.
            body.append(
                f'<path fill="{colour}" style="stroke:{colour};stroke-width:1;'
                f'stroke-linejoin:round" d="{"".join(grouped[colour])}">'
                f"<title>{escape(tip)}</title></path>"
            )
    body.append("</g>")
    desc = (
        f"{len(rows)} communes ; {beyond} à plus de {max_km:g} km d'un lieu de médiation "
        "qui reçoit des orientations (en rouge), ou sans lieu (en gris). Les chiffres de "
        "chaque commune sont dans le tableau et le fichier CSV."
    )
    return _svg(shapes.width, shapes.height, title, desc, body, "map")


def _paths(geometries: np.ndarray, unit: float) -> list[str]:
    """An SVG path per geometry (empty for a point), every ring at once: shapely splits the
    geometries into rings and coordinates in three vectorised calls, rounded to `unit`; each
    ring an absolute start, then relative steps (small numbers: a third of the bytes); points
    that rounding made repeats dropped. Python only joins the text."""
    parts, part_of = shapely.get_parts(geometries, return_index=True)
    rings, ring_of = shapely.get_rings(parts, return_index=True)
    xy, coordinate_of = shapely.get_coordinates(rings, return_index=True)
    grid = np.rint(xy / unit).astype(np.int64)
    # Without each ring's closing point (the path's z), nor a point equal to the one before.
    last = np.ones(len(grid), dtype=bool)
    last[:-1] = coordinate_of[1:] != coordinate_of[:-1]
    repeated = np.zeros(len(grid), dtype=bool)
    repeated[1:] = (grid[1:] == grid[:-1]).all(axis=1) & ~last[:-1]
    kept = ~(last | repeated)
    grid, coordinate_of = grid[kept], coordinate_of[kept]
    steps = np.empty_like(grid)
    steps[1:] = grid[1:] - grid[:-1]
    first = np.ones(len(grid), dtype=bool)
    first[1:] = coordinate_of[1:] != coordinate_of[:-1]
    steps[first] = grid[first]  # each ring starts where it is
    # A flat list of ints (a nested one makes a million small lists for the collector).
    flat = steps.ravel().tolist()
    counts = np.bincount(coordinate_of, minlength=len(rings))
    bounds = np.concatenate(([0], np.cumsum(counts))).tolist()
    owners = part_of[ring_of].tolist()
    out: list[list[str]] = [[] for _ in range(len(geometries))]
    for ring, owner in enumerate(owners):
        begin, end = 2 * bounds[ring], 2 * bounds[ring + 1]
        if end - begin >= 6:  # a triangle at least
            numbers = flat[begin:end]
            out[owner].append(
                f"M{numbers[0]} {numbers[1]}l" + " ".join(map(str, numbers[2:])) + "z"
            )
    return ["".join(path).replace(" -", "-") for path in out]
