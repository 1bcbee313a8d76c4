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


def distances_km(
    lat: float, lon: float, lats: NDArray[np.float64], lons: NDArray[np.float64]
) -> NDArray[np.float64]:
    """distance_km from one point to many, the same formula over arrays of degrees."""
    phi1, phi2 = np.radians(lat), np.radians(lats)
    dphi, dlmb = phi2 - phi1, np.radians(lons - lon)
    h = np.sin(dphi / 2) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(dlmb / 2) ** 2
    result: NDArray[np.float64] = 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(h)))
    return result
