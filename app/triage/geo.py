"""Great-circle distance, the one place where distances between places and communes are computed."""

from math import asin, cos, radians, sin, sqrt

EARTH_RADIUS_KM = 6371.0088


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = radians(lat1), radians(lat2)
    dphi, dlmb = phi2 - phi1, radians(lon2 - lon1)
    h = sin(dphi / 2) ** 2 + cos(phi1) * cos(phi2) * sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * asin(min(1.0, sqrt(h)))


def bounding_box(lat: float, lon: float, km: float) -> tuple[float, float, float, float]:
    """A lat/lon box that contains every point within `km` of (lat, lon): a cheap SQL prefilter."""
    dlat = km / 111.0
    dlon = km / max(1e-6, 111.320 * cos(radians(lat)))
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon
