"""People's accounts: invitations to a membership, the team of a place, one-time sign-in links
by e-mail, server-side sessions, requests to join a place, deactivation and erasure.

A membership has a role and a scope exactly as an API key (app.services.keys.resolve_scope);
a person acting in one is a Principal with no key, naming the person and the membership, so
that the handoff log and the access log say who acted or read. Sessions live in the database:
logging out, removing a member or deactivating a person ends them at the next request."""

import html
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import and_, func, update
from sqlmodel import Session, col, select

from app.db import writing
from app.models import (
    JoinRequest,
    LoginLink,
    Membership,
    Place,
    PlaceKind,
    Principal,
    Role,
    User,
    WebSession,
)
from app.models.common import new_id, utcnow
from app.notifications import notify
from app.principal import hash_token
from app.services.keys import KeyError_, resolve_scope
from app.services.links import link_secret

INVITATION = "account.invitation"
LOGIN_LINK = "account.login_link"
JOIN_REQUEST = "account.join_request"
JOIN_ANSWER = "account.join_answer"
LINKS_PER_QUARTER = 3  # sign-in links one address may ask for in 15 minutes
_LOGIN_SALT = "passerelle-connexion"
_JOIN_SALT = "passerelle-demande-equipe"

ROLE_LABELS = {
    Role.AGENT: "agent France Services",
    Role.MEDIATEUR: "médiateur numérique",
    Role.COORDINATEUR: "coordinateur",
    Role.ADMIN: "administrateur",
}


class AccountError(ValueError):
    """A request about accounts that cannot be met (message in French, for a page or the CLI)."""


def normal_email(email: str) -> str:
    return email.strip().lower()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def display_name(user: User) -> str:
    """« Marie Curie », or the e-mail when the person never said their name."""
    name = " ".join(p for p in (user.first_name, user.last_name) if p)
    return name or user.email or "personne effacée"


def user_by_email(session: Session, email: str) -> User | None:
    return session.exec(select(User).where(User.email == normal_email(email))).first()


def active_memberships(session: Session, user_id: str) -> list[Membership]:
    return list(
        session.exec(
            select(Membership)
            .where(Membership.user_id == user_id, col(Membership.removed_at).is_(None))
            .order_by(col(Membership.created_at), col(Membership.id))
        ).all()
    )


def membership_label(session: Session, membership: Membership) -> str:
    """« médiateur numérique — Espace numérique de Tulle », as the pages and e-mails say it."""
    role = ROLE_LABELS[Role(membership.role)]
    if membership.place_id:
        place = session.get(Place, membership.place_id)
        return f"{role} — {place.name if place else membership.place_id}"
    if membership.territory:
        return f"{role} — {membership.territory}"
    return role


# --- invitations and teams ----------------------------------------------------------------


def invite(
    session: Session,
    *,
    email: str,
    role: Role,
    place_id: str | None = None,
    territory: str | None = None,
    responsable: bool = False,
    by: Principal | None = None,
    link_days: float = 7.0,
    now: datetime | None = None,
) -> Membership:
    """Invites a person by e-mail to a membership (an existing person gets one more): the
    invitation e-mail carries a sign-in link. Inviting again to the same membership sends a
    fresh link and creates nothing. AccountError when the scope does not fit the role."""
    now = now or utcnow()
    email = normal_email(email)
    if "@" not in email or len(email) > 254 or any(c.isspace() for c in email):
        raise AccountError(f"Adresse e-mail invalide : « {email} ».")
    if session.in_transaction():
        session.commit()
    with writing(session):
        try:
            place_id, territory = resolve_scope(session, role, place_id, territory)
        except KeyError_ as error:
            raise AccountError(str(error)) from error
        user = user_by_email(session, email)
        if user is None:
            user = User(email=email, created_at=now)
            session.add(user)
            session.flush()
        elif user.deactivated_at is not None:  # invited back: the account opens again
            user.deactivated_at = None
            session.add(user)
        membership = session.exec(
            select(Membership).where(
                Membership.user_id == user.id,
                Membership.role == role.value,
                col(Membership.place_id).is_(None)
                if place_id is None
                else Membership.place_id == place_id,
                col(Membership.territory).is_(None)
                if territory is None
                else Membership.territory == territory,
                col(Membership.removed_at).is_(None),
            )
        ).first()
        if membership is None:
            membership = Membership(
                user_id=user.id,
                role=role.value,
                place_id=place_id,
                territory=territory,
                responsable=responsable,
                created_at=now,
                invited_by_user_id=by.user_id if by else None,
                invited_by_key_id=by.key_id if by else None,
            )
        elif responsable:
            membership.responsable = True
        session.add(membership)
        session.flush()
        link = _new_login_link(session, user, now, timedelta(days=link_days), None)
        inviter = session.get(User, by.user_id) if by and by.user_id else None
        _queue_email(
            session,
            INVITATION,
            email,
            {
                "link_id": link.id,
                "membership": membership_label(session, membership),
                "by": display_name(inviter) if inviter else None,
                "days": link_days,
            },
            now,
        )
        session.commit()
    session.refresh(membership)
    return membership


def manages_team(principal: Principal, responsable: bool, place_id: str | None) -> bool:
    """The admin manages every team; a place's responsable (`responsable`: the principal's
    membership says so), the team of their own place."""
    if principal.role is Role.ADMIN:
        return True
    return responsable and bool(place_id) and principal.place_id == place_id


def is_responsable(session: Session, principal: Principal) -> bool:
    if principal.membership_id is None:
        return False
    membership = session.get(Membership, principal.membership_id)
    return membership is not None and membership.responsable and membership.removed_at is None


@dataclass(frozen=True)
class Member:
    membership: Membership
    user: User

    @property
    def name(self) -> str:
        return display_name(self.user)


def team(session: Session, place_id: str) -> list[Member]:
    rows = session.exec(
        select(Membership, User)
        .join(User, col(User.id) == col(Membership.user_id))
        .where(Membership.place_id == place_id, col(Membership.removed_at).is_(None))
        .order_by(col(User.last_name), col(User.email))
    ).all()
    return [Member(m, u) for m, u in rows]


def remove_member(
    session: Session,
    membership_id: str,
    by: Principal,
    place_id: str | None = None,
    now: datetime | None = None,
) -> str:
    """Removes a member from the team (of `place_id`, when given): their sessions in that
    membership end at once. Returns the member's name."""
    now = now or utcnow()
    with writing(session):
        membership = session.get(Membership, membership_id)
        if (
            membership is None
            or membership.removed_at is not None
            or (place_id is not None and membership.place_id != place_id)
        ):
            raise AccountError("Ce membre ne fait plus partie de l'équipe.")
        if not manages_team(by, is_responsable(session, by), membership.place_id):
            raise AccountError("Seul le responsable du lieu ou l'administrateur retire un membre.")
        membership.removed_at = now
        session.add(membership)
        session.execute(
            update(WebSession)
            .where(
                col(WebSession.membership_id) == membership.id, col(WebSession.ended_at).is_(None)
            )
            .values(ended_at=now)
        )
        user = session.get_one(User, membership.user_id)
        name = display_name(user)
        session.commit()
    return name


def deactivate(session: Session, email: str, now: datetime | None = None) -> User | None:
    """Deactivates a person (operators, `passerelle users deactivate`): every membership
    removed, every session ended; the name and e-mail are erased after the retention period."""
    now = now or utcnow()
    if session.in_transaction():
        session.commit()
    with writing(session):
        user = user_by_email(session, email)
        if user is None:
            return None
        if user.deactivated_at is None:
            user.deactivated_at = now
            session.add(user)
        session.execute(
            update(Membership)
            .where(col(Membership.user_id) == user.id, col(Membership.removed_at).is_(None))
            .values(removed_at=now)
        )
        _end_sessions_of(session, user.id, now)
        session.commit()
    session.refresh(user)
    return user


def _end_sessions_of(session: Session, user_id: str, now: datetime) -> None:
    session.execute(
        update(WebSession)
        .where(col(WebSession.user_id) == user_id, col(WebSession.ended_at).is_(None))
        .values(ended_at=now)
    )


def list_users(session: Session) -> list[tuple[User, list[Membership]]]:
    """Every person not erased, with their memberships (one query, not one a person)."""
    rows = session.exec(
        select(User, Membership)
        .outerjoin(
            Membership,
            and_(col(Membership.user_id) == col(User.id), col(Membership.removed_at).is_(None)),
        )
        .where(col(User.erased_at).is_(None))
        .order_by(col(User.email), col(Membership.created_at), col(Membership.id))
    ).all()
    people: dict[str, tuple[User, list[Membership]]] = {}
    for user, membership in rows:
        _, memberships = people.setdefault(user.id, (user, []))
        if membership is not None:
            memberships.append(membership)
    return list(people.values())


def erase_deactivated(session: Session, retention_days: int, now: datetime | None = None) -> int:
    """Erases the name, e-mail and provider identifier of people deactivated longer than the
    retention period: the logs keep pointing at an account that no longer says who it was."""
    now = now or utcnow()
    with writing(session):
        done = session.execute(
            update(User)
            .where(
                col(User.deactivated_at) < now - timedelta(days=retention_days),
                col(User.erased_at).is_(None),
            )
            .values(email=None, first_name=None, last_name=None, oidc_sub=None, erased_at=now)
        )
        session.commit()
    return int(done.rowcount)  # type: ignore[attr-defined]


# --- sign-in links ------------------------------------------------------------------------


def _new_login_link(
    session: Session, user: User, now: datetime, valid: timedelta, next_path: str | None
) -> LoginLink:
    link = LoginLink(
        id=new_id("lnk"),
        user_id=user.id,
        created_at=now,
        expires_at=now + valid,
        next_path=next_path,
    )
    session.add(link)
    session.flush()
    return link


def login_token(secret: str, link_id: str) -> str:
    return str(URLSafeTimedSerializer(secret, salt=_LOGIN_SALT).dumps(link_id))


def request_login_link(
    session: Session, email: str, next_path: str | None, minutes: float, now: datetime | None = None
) -> bool:
    """Sends a one-time sign-in link, only to an address with a membership or an invitation,
    a few times a quarter of an hour at most. True when one was queued (the page says the same
    either way: it never tells who has an account)."""
    now = now or utcnow()
    with writing(session):
        user = user_by_email(session, email)
        if user is None or user.deactivated_at is not None:
            return False
        if not active_memberships(session, user.id) and not _pending_join(session, user.id):
            return False
        recent = session.execute(
            select(func.count())
            .select_from(LoginLink)
            .where(
                col(LoginLink.user_id) == user.id,
                col(LoginLink.created_at) > now - timedelta(minutes=15),
            )
        ).scalar_one()
        if recent >= LINKS_PER_QUARTER:
            return False
        link = _new_login_link(session, user, now, timedelta(minutes=minutes), next_path)
        _queue_email(
            session, LOGIN_LINK, user.email or "", {"link_id": link.id, "minutes": minutes}, now
        )
        session.commit()
    return True


def _pending_join(session: Session, user_id: str) -> bool:
    return (
        session.exec(
            select(JoinRequest.id).where(
                JoinRequest.user_id == user_id, col(JoinRequest.decided_at).is_(None)
            )
        ).first()
        is not None
    )


def _login_link_id(session: Session, token: str) -> str | None:
    """The link a token names, or None when it was not signed here (mistyped, altered)."""
    try:
        link_id = URLSafeTimedSerializer(link_secret(session), salt=_LOGIN_SALT).loads(token)
    except (BadData, ValueError, TypeError):
        return None
    return link_id if isinstance(link_id, str) else None


def peek_login_link(session: Session, token: str, now: datetime | None = None) -> LoginLink | None:
    """The link a token names, while it is unused and in time (the page with the button)."""
    link_id = _login_link_id(session, token)
    link = session.get(LoginLink, link_id) if link_id else None
    if link is None or link.used_at is not None or _aware(link.expires_at) <= (now or utcnow()):
        return None
    return link


def login_link_state(session: Session, token: str) -> Literal["forged", "gone", "usable"]:
    """What a sign-in link's page says: not a link of ours, a link used or expired, or one
    that signs in."""
    if _login_link_id(session, token) is None:
        return "forged"
    return "usable" if peek_login_link(session, token) else "gone"


def use_login_link(
    session: Session, token: str, now: datetime | None = None
) -> tuple[str, str | None] | None:
    """Spends a sign-in link: one conditional UPDATE, so that of two uses one wins. Returns
    (the person's id, the page asked for before sign-in)."""
    now = now or utcnow()
    with writing(session):
        link = peek_login_link(session, token, now)
        if link is None:
            return None
        found = (link.user_id, link.next_path)
        done = session.execute(
            update(LoginLink)
            .where(col(LoginLink.id) == link.id, col(LoginLink.used_at).is_(None))
            .values(used_at=now)
        )
        session.commit()
    return found if done.rowcount == 1 else None  # type: ignore[attr-defined]


# --- sessions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """What the pages say of the person signed in."""

    user_id: str
    name: str
    email: str
    memberships: int
    responsable: bool


def open_session(
    session: Session, user_id: str, via: str, hours: float, now: datetime | None = None
) -> str:
    """A new session for the person, in their first membership (they switch on /espace):
    returns the token to put in the cookie. Their invitations count as accepted."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    with writing(session):
        user = session.get_one(User, user_id)
        if user.deactivated_at is not None:
            raise AccountError("Ce compte est désactivé.")
        memberships = active_memberships(session, user_id)
        for membership in memberships:
            if membership.accepted_at is None:
                membership.accepted_at = now
                session.add(membership)
        user.last_login_at = now
        session.add(user)
        session.add(
            WebSession(
                id=hash_token(token),
                user_id=user_id,
                membership_id=memberships[0].id if memberships else None,
                via=via,
                created_at=now,
                expires_at=now + timedelta(hours=hours),
            )
        )
        session.commit()
    return token


def principal_of_session(
    session: Session, token: str, now: datetime | None = None
) -> tuple[Principal | None, Account] | None:
    """The person and the membership a session acts in; None when the session ended, expired,
    or its person was deactivated. A person with no membership left (a request to join is
    waiting) has an account and no principal."""
    now = now or utcnow()
    # One query a page: the session, its person and their memberships.
    rows = session.exec(
        select(WebSession, User, Membership)
        .join(User, col(User.id) == col(WebSession.user_id))
        .outerjoin(
            Membership,
            and_(col(Membership.user_id) == col(User.id), col(Membership.removed_at).is_(None)),
        )
        .where(
            WebSession.id == hash_token(token),
            col(WebSession.ended_at).is_(None),
            col(WebSession.expires_at) > now,
            col(User.deactivated_at).is_(None),
        )
        .order_by(col(Membership.created_at), col(Membership.id))
    ).all()
    if not rows:
        return None
    web_session, user = rows[0][0], rows[0][1]
    memberships = [m for _, _, m in rows if m is not None]
    if web_session.membership_id is None:  # had none at sign-in (a request to join since)
        membership = memberships[0] if memberships else None
    else:
        membership = next((m for m in memberships if m.id == web_session.membership_id), None)
        if membership is None:
            return None  # removed from that team: the session ends with it
    account = Account(
        user.id,
        display_name(user),
        user.email or "",
        len(memberships),
        bool(membership and membership.responsable),
    )
    if membership is None:
        return None, account
    principal = Principal(
        None,
        Role(membership.role),
        membership.place_id,
        membership.territory,
        user_id=user.id,
        membership_id=membership.id,
    )
    return principal, account


def switch_membership(session: Session, token: str, membership_id: str) -> Role | None:
    """The session acts in another of its person's memberships: its role, or None when that
    membership is not (or no longer) theirs."""
    with writing(session):
        web_session = session.get(WebSession, hash_token(token))
        if web_session is None or web_session.ended_at is not None:
            return None
        membership = session.get(Membership, membership_id)
        if (
            membership is None
            or membership.user_id != web_session.user_id
            or membership.removed_at is not None
        ):
            return None
        web_session.membership_id = membership.id
        session.add(web_session)
        role = Role(membership.role)
        session.commit()
    return role


def end_session(session: Session, token: str, now: datetime | None = None) -> None:
    with writing(session):
        session.execute(
            update(WebSession)
            .where(col(WebSession.id) == hash_token(token), col(WebSession.ended_at).is_(None))
            .values(ended_at=now or utcnow())
        )
        session.commit()


# --- OpenID Connect -----------------------------------------------------------------------


@dataclass(frozen=True)
class SignIn:
    """What an OpenID Connect sign-in found: the person (None: nobody invited them), and the
    places whose SIRET their provider gave, which they may ask to join."""

    user_id: str | None
    places: list[Place]


def sign_in_oidc(session: Session, claims: dict[str, Any], now: datetime | None = None) -> SignIn:
    """The person of the provider's `sub`; on a first sign-in, the person invited at the
    verified e-mail the provider gives (their `sub` is then recorded). A SIRET that matches
    places lets a stranger ask to join one."""
    now = now or utcnow()
    sub = str(claims["sub"])
    email = normal_email(str(claims.get("email") or ""))
    verified = claims.get("email_verified", True) is not False and "@" in email
    with writing(session):
        user = session.exec(select(User).where(User.oidc_sub == sub)).first()
        if user is None and verified:
            user = user_by_email(session, email)
            if user is not None and user.oidc_sub is not None:
                user = None  # that address belongs to another identity of the provider
        siret = "".join(c for c in str(claims.get("siret") or "") if c.isdigit())
        places = (
            list(session.exec(select(Place).where(Place.pivot == siret)).all())
            if len(siret) == 14
            else []
        )
        if user is None and places and verified:
            user = user_by_email(session, email) or User(email=email, created_at=now)
        if user is None or user.deactivated_at is not None:
            return SignIn(None, places)
        user.oidc_sub = sub
        user.first_name = str(claims.get("given_name") or "") or user.first_name
        user.last_name = str(claims.get("usual_name") or claims.get("family_name") or "") or (
            user.last_name
        )
        session.add(user)
        session.commit()
        user_id = user.id
    mine = {m.place_id for m in active_memberships(session, user_id)}
    return SignIn(user_id, [p for p in places if p.id not in mine])


def pending_joins(session: Session, user_id: str) -> list[tuple[JoinRequest, Place]]:
    """The person's requests to join that no one has answered yet."""
    return [
        (r, p)
        for r, p in session.exec(
            select(JoinRequest, Place)
            .join(Place, col(Place.id) == col(JoinRequest.place_id))
            .where(JoinRequest.user_id == user_id, col(JoinRequest.decided_at).is_(None))
        ).all()
    ]


def waiting_joins(session: Session, place_id: str) -> list[tuple[JoinRequest, User]]:
    """The requests to join a place that wait for its responsable."""
    return [
        (r, u)
        for r, u in session.exec(
            select(JoinRequest, User)
            .join(User, col(User.id) == col(JoinRequest.user_id))
            .where(JoinRequest.place_id == place_id, col(JoinRequest.decided_at).is_(None))
            .order_by(col(JoinRequest.created_at))
        ).all()
    ]


def join_role(place: Place) -> Role:
    return Role.AGENT if place.kind == PlaceKind.FRANCE_SERVICES.value else Role.MEDIATEUR


def request_join(
    session: Session, user_id: str, place_id: str, now: datetime | None = None
) -> JoinRequest:
    """A request to join a place (its SIRET is the person's): an e-mail to its responsables,
    or to the place's own address when it has none, to accept or refuse."""
    now = now or utcnow()
    with writing(session):
        place = session.get(Place, place_id)
        user = session.get_one(User, user_id)
        if place is None:
            raise AccountError("Lieu inconnu.")
        found = session.exec(
            select(JoinRequest).where(
                JoinRequest.user_id == user_id,
                JoinRequest.place_id == place_id,
                col(JoinRequest.decided_at).is_(None),
            )
        ).first()
        if found is not None:
            return found
        request = JoinRequest(
            user_id=user_id, place_id=place_id, role=join_role(place).value, created_at=now
        )
        session.add(request)
        session.flush()
        responsables = [
            m.user.email
            for m in team(session, place_id)
            if m.membership.responsable and m.user.email and m.user.deactivated_at is None
        ]
        for address in responsables or ([place.email] if place.email else []):
            _queue_email(
                session,
                JOIN_REQUEST,
                address,
                {
                    "request_id": request.id,
                    "who": display_name(user),
                    "email": user.email,
                    "place": place.name,
                    "role": ROLE_LABELS[join_role(place)],
                },
                now,
            )
        session.commit()
    session.refresh(request)
    return request


def join_token(secret: str, request_id: str) -> str:
    return str(URLSafeTimedSerializer(secret, salt=_JOIN_SALT).dumps(request_id))


def read_join(session: Session, token: str) -> JoinRequest | None:
    try:
        request_id = URLSafeTimedSerializer(link_secret(session), salt=_JOIN_SALT).loads(
            token, max_age=30 * 86400
        )
    except (BadData, ValueError, TypeError):
        return None
    return session.get(JoinRequest, request_id) if isinstance(request_id, str) else None


def decide_join(
    session: Session, token: str, accept: bool, now: datetime | None = None
) -> JoinRequest | None:
    """The responsable's answer, from their e-mail: accepted, the person becomes a member
    (and is told by e-mail); either way the request is closed."""
    now = now or utcnow()
    with writing(session):
        request = read_join(session, token)
        if request is None:
            return None
        if request.decided_at is not None:
            return request
        request.decided_at, request.accepted = now, accept
        session.add(request)
        user = session.get_one(User, request.user_id)
        place = session.get_one(Place, request.place_id)
        if accept:
            session.add(
                Membership(
                    user_id=user.id,
                    role=request.role,
                    place_id=place.id,
                    created_at=now,
                    accepted_at=now,
                )
            )
        if user.email:
            _queue_email(
                session, JOIN_ANSWER, user.email, {"place": place.name, "accepted": accept}, now
            )
        session.commit()
    session.refresh(request)
    return request


# --- the e-mails --------------------------------------------------------------------------


def _queue_email(
    session: Session, event: str, recipient: str, facts: dict[str, Any], now: datetime
) -> None:
    notify.enqueue(session, "email", event, None, recipient, None, {"event": event, **facts}, now)


def _duration(minutes: float) -> str:
    if minutes >= 1440:
        days = round(minutes / 1440)
        return f"{days} jour{'s' if days > 1 else ''}"
    return f"{round(minutes)} minutes"


def render_email(
    facts: dict[str, Any], public_url: str, secret: str | None
) -> tuple[str, str, str]:
    """(subject, text, html) of an e-mail about an account, in French. Links are signed at
    delivery from ids (the outbox holds no usable token)."""
    base = public_url.rstrip("/")
    event = facts["event"]
    link = action = ""
    if event in (INVITATION, LOGIN_LINK) and secret:
        link = f"{base}/connexion/lien/{login_token(secret, facts['link_id'])}"
    if event == INVITATION:
        subject = "Invitation à rejoindre Passerelle"
        by = f"{facts['by']} vous invite" if facts.get("by") else "Vous êtes invité(e)"
        lead = (
            f"{by} à utiliser Passerelle en tant que {facts['membership']}. Connectez-vous "
            f"avec ProConnect, ou avec le lien ci-dessous (valable "
            f"{_duration(float(facts['days']) * 1440)}, une seule fois ; ensuite, demandez-en "
            "un nouveau sur la page de connexion)."
        )
        action = "Me connecter"
    elif event == LOGIN_LINK:
        subject = "Votre lien de connexion à Passerelle"
        lead = (
            f"Voici votre lien de connexion : il sert une seule fois et pendant "
            f"{_duration(float(facts['minutes']))}. Si vous ne l'avez pas demandé, ignorez ce "
            "message : personne ne peut s'en servir sans accéder à votre boîte."
        )
        action = "Me connecter"
    elif event == JOIN_REQUEST:
        subject = f"{facts['who']} demande à rejoindre {facts['place']}"
        lead = (
            f"{facts['who']} ({facts['email']}) s'est connecté(e) avec ProConnect au nom de "
            f"votre structure et demande à rejoindre l'équipe de {facts['place']} en tant que "
            f"{facts['role']}. Acceptez ou refusez depuis la page du lien."
        )
        if secret:
            link = f"{base}/equipe/demandes/{join_token(secret, facts['request_id'])}"
        action = "Répondre à la demande"
    else:  # JOIN_ANSWER
        accepted = bool(facts["accepted"])
        subject = (
            f"Vous avez rejoint {facts['place']}"
            if accepted
            else f"Demande refusée : {facts['place']}"
        )
        lead = (
            f"Votre demande pour rejoindre {facts['place']} a été acceptée : connectez-vous."
            if accepted
            else f"Votre demande pour rejoindre {facts['place']} n'a pas été acceptée."
        )
        link, action = f"{base}/connexion", "Aller à la page de connexion"
    text = f"Bonjour,\n\n{lead}\n\n" + (f"{action} : {link}\n\n" if link else "") + "— Passerelle\n"
    page = (
        '<!doctype html><html lang="fr"><body>'
        f"<p>Bonjour,</p><p>{html.escape(lead)}</p>"
        + (f'<p><a href="{html.escape(link)}">{html.escape(action)}</a></p>' if link else "")
        + "<p>— Passerelle</p></body></html>"
    )
    return subject, text, page
