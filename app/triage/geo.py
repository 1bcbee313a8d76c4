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
