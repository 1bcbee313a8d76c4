"""Who sees which rows, and which open referrals are past their deadline: the one module that
filters a query by the caller's place (tests/test_layering.py refuses such a filter anywhere
else), as Polar's get_readable_statement does. A coordinator's territory has its own:
app.services.territories.readable_territory."""

from datetime import datetime

from sqlalchemy import ColumnElement, and_, false
from sqlmodel import col

from app.models import Orientation, Principal, Referral, Role
from app.triage.lifecycle import EXPIRABLE


def scope_filter(principal: Principal) -> ColumnElement[bool]:
    """The one rule of who sees which referral: a médiateur its place's, an agent what it sent."""
    if principal.role is Role.MEDIATEUR:
        return col(Referral.place_id) == principal.place_id
    if principal.role is Role.AGENT:
        return col(Referral.origin_place_id) == principal.place_id
    return false()


def orientation_scope(principal: Principal) -> ColumnElement[bool]:
    """Who sees which orientation: the agent of the place that made it (the receiving place
    sees its referral, never the orientation behind it)."""
    if principal.role is Role.AGENT:
        return col(Orientation.origin_place_id) == principal.place_id
    return false()


def past_due(now: datetime) -> ColumnElement[bool]:
    """Referrals still open whose deadline has passed: expired as shown, before the service
    writes it (the SQL of app.triage.lifecycle.shown_status, for queries over many rows)."""
    return and_(
        col(Referral.status).in_(sorted(s.value for s in EXPIRABLE)),
        col(Referral.expires_at) <= now,
    )
