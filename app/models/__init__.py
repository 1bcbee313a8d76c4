"""SQLModel tables and API schemas, one module per concept."""

from app.models.account import JoinRequest, LoginLink, Membership, User, WebSession
from app.models.apikey import ApiKey, Principal, Role
from app.models.audit import ContactRead
from app.models.commune import Commune, Departement, Epci, Region
from app.models.data_version import DataVersion
from app.models.idempotency import IdempotencyRecord
from app.models.orientation import Contact, Orientation
from app.models.referral import HandoffEvent, Referral
from app.models.secret import ServerSecret
from app.models.throttle import AuthFailure
from app.notifications.models import OutboxMessage, Webhook
from app.places.models import Place, PlaceEvent, PlaceKind
from app.triage.lifecycle import ReferralStatus

__all__ = [
    "ApiKey",
    "AuthFailure",
    "Commune",
    "Contact",
    "ContactRead",
    "DataVersion",
    "Departement",
    "Epci",
    "HandoffEvent",
    "IdempotencyRecord",
    "JoinRequest",
    "LoginLink",
    "Membership",
    "Orientation",
    "OutboxMessage",
    "Place",
    "PlaceEvent",
    "PlaceKind",
    "Principal",
    "Referral",
    "ReferralStatus",
    "Region",
    "Role",
    "ServerSecret",
    "User",
    "WebSession",
    "Webhook",
]
