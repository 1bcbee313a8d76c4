"""Great-circle distance, the one place where distances between places and communes are computed."""

from math import asin, cos, radians, sin, sqrt

import numpy as np
from numpy.typing import NDArray

EARTH_RADIUS_KM = 6371.0088


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = radians(lat1), radians(lat2)
    dphi, dlmb = phi2 - phi1, radians(lon2 - lon1)
    h = sin(dphi / 2) ** 2 + cos(phi1) * cos(phi2) * sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * asin(min(1.0, sqrt(h)))


class Points:
    """Many points, prepared once (radians, cosines) for distances_km from any origin."""

    def __init__(self, lats: NDArray[np.float64], lons: NDArray[np.float64]) -> None:
        self.lats, self.lons = lats, lons
        self.phi = np.radians(lats)
        self.lmb = np.radians(lons)
        self.cos_phi = np.cos(self.phi)

    def distances_km(
        self, lat: float, lon: float, subset: NDArray[np.intp] | None = None
    ) -> NDArray[np.float64]:
        """distance_km from (lat, lon) to each point (or to the points of `subset`): the same
        formula, over arrays."""
        phi, lmb, cos_phi = self.phi, self.lmb, self.cos_phi
        if subset is not None:
            phi, lmb, cos_phi = phi[subset], lmb[subset], cos_phi[subset]
        phi1, lmb1 = radians(lat), radians(lon)
        h = np.sin((phi - phi1) / 2) ** 2 + cos(phi1) * cos_phi * np.sin((lmb - lmb1) / 2) ** 2
        result: NDArray[np.float64] = 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(h)))
        return result


def unit_vectors(lats: NDArray[np.float64], lons: NDArray[np.float64]) -> NDArray[np.float64]:
    """Points on the unit sphere (x, y, z): the straight-line (chord) distance between two of
    them grows with the great-circle distance, so a k-d tree over them finds nearest places."""
    phi, lmb = np.radians(lats), np.radians(lons)
    cos_phi = np.cos(phi)
    return np.column_stack((cos_phi * np.cos(lmb), cos_phi * np.sin(lmb), np.sin(phi)))


def chord_km(chord: NDArray[np.float64]) -> NDArray[np.float64]:
    """Great-circle km of unit-sphere chords: 2R·asin(c/2), the haversine formula of
    distance_km (for two points, c/2 is the square root of its h)."""
    result: NDArray[np.float64] = 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, chord / 2))
    return result
