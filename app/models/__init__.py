"""SQLModel tables and API schemas, one module per concept."""

from app.models.apikey import ApiKey, Role
from app.models.commune import Commune
from app.models.idempotency import IdempotencyRecord
from app.models.orientation import Contact, Orientation
from app.models.place import Place, PlaceKind
from app.models.referral import HandoffEvent, Referral, ReferralStatus

__all__ = [
    "ApiKey",
    "Commune",
    "Contact",
    "HandoffEvent",
    "IdempotencyRecord",
    "Orientation",
    "Place",
    "PlaceKind",
    "Referral",
    "ReferralStatus",
    "Role",
]
