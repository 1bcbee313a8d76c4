"""The errors the service means to answer, one class per case, without any web framework.

Each class says once its HTTP status and its slug (the end of the problem's `type` URI):
services raise them, app.errors renders them as RFC 9457 problem details, and the routers list
them in their `responses=` (app.errors.problem_responses), so that the OpenAPI document says
which problems each operation may answer. A slug is declared by one class only (a test reads
app/ for it)."""

from typing import Any, ClassVar

TYPE_BASE = "https://passerelle.inclusion-numerique.example/problemes/"

TITLES = {
    400: "Requête incorrecte",
    401: "Authentification requise",
    403: "Accès refusé",
    404: "Ressource introuvable",
    405: "Méthode non autorisée",
    408: "Délai de requête dépassé",
    409: "Conflit d'état",
    412: "Précondition échouée",
    413: "Requête trop volumineuse",
    415: "Type de contenu non pris en charge",
    422: "Données invalides",
    429: "Trop de requêtes",
    431: "En-têtes trop volumineux",
    500: "Erreur interne",
    503: "Service indisponible",
}
INTERNAL_ERROR = "Erreur interne du service ; réessayez plus tard."


def title_of(status: int) -> str:
    return TITLES.get(status, "Erreur")


class Problem(Exception):
    """An error the service means to return; raised by services and dependencies. Raise one
    of its subclasses: they carry the status and the slug. `extra` members go into the
    problem's body as they are (`current_status`, `choices`)."""

    status: ClassVar[int] = 500
    # None: the type URI ends with the status (the framework's own errors, the 500).
    slug: ClassVar[str | None] = None

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers
        self.extra = extra

    @classmethod
    def type_uri(cls) -> str:
        return TYPE_BASE + (cls.slug or str(cls.status))

    @classmethod
    def title(cls) -> str:
        return title_of(cls.status)


# --- the request itself ---------------------------------------------------------------------


class InvalidJson(Problem):
    """The body is not JSON the service can read (app.guard)."""

    status = 400
    slug = "json-invalide"


class UnreadableJson(InvalidJson):
    """The same, found by FastAPI's validation rather than by the guard: a 422, as it always
    answered (the slug is InvalidJson's)."""

    status = 422


class InvalidCursor(Problem):
    status = 400
    slug = "curseur-invalide"


class BodyTooLarge(Problem):
    status = 413
    slug = "trop-volumineux"


class UnsupportedContentType(Problem):
    status = 415
    slug = "type-de-contenu"


class InvalidData(Problem):
    """Data that does not follow the contract: `errors` names each field in cause."""

    status = 422
    slug = "donnees-invalides"


class IdempotencyKeyReused(Problem):
    status = 422
    slug = "idempotence"


class InternalError(Problem):
    """The last resort: nothing of the exception is said (it may carry personal data)."""

    status = 500


# --- who calls ------------------------------------------------------------------------------


class Unauthenticated(Problem):
    status = 401
    slug = "authentification"


class AccessDenied(Problem):
    """The caller's role may not do this."""

    status = 403
    slug = "acces-refuse"


class OutOfTerritory(Problem):
    """A territory outside the coordinator's own."""

    status = 403
    slug = "hors-territoire"


class FormRefused(Problem):
    """A page's form that did not come from that page (anti-forgery)."""

    status = 403
    slug = "formulaire-refuse"


class TooManyAttempts(Problem):
    """Too many wrong tokens, keys or links from one address: `Retry-After` says when."""

    status = 429
    slug = "trop-de-tentatives"


# --- what is asked for ----------------------------------------------------------------------


class NotFound(Problem):
    """Missing and out of the caller's scope alike: the same 404, nothing to tell them apart."""

    status = 404
    slug = "introuvable"


class UnknownLink(Problem):
    status = 404
    slug = "lien-inconnu"


class UnknownRole(Problem):
    status = 404
    slug = "role-inconnu"


class UnknownPlace(Problem):
    status = 404
    slug = "lieu-inconnu"


class OidcNotConfigured(Problem):
    status = 404
    slug = "oidc-absent"


# --- a referral's lifecycle -----------------------------------------------------------------


class TransitionRefused(Problem):
    """The referral's current status does not allow it (`current_status` in the body)."""

    status = 409
    slug = "transition-refusee"


class AlreadyReoriented(Problem):
    status = 409
    slug = "deja-reorientee"


class NoPlaceNearby(Problem):
    """A reorientation finds no other suitable place within the distance."""

    status = 409
    slug = "aucun-lieu"


class VersionMismatch(Problem):
    """If-Match names a version the referral no longer has."""

    status = 412
    slug = "version-perimee"


# --- the service ----------------------------------------------------------------------------


class DatabaseUnavailable(Problem):
    status = 503
    slug = "base-indisponible"


class NotReady(Problem):
    """/readyz: the service cannot serve yet (migrations, database)."""

    status = 503
    slug = "indisponible"


def unavailable(reason: str) -> Problem:
    """503: the database cannot be reached or written (app.db.storage_fault says why). Its
    Retry-After is the guard's, as on every 503 (app.guard)."""
    return DatabaseUnavailable(f"{reason} Réessayez dans quelques instants.")


def invalid(loc: list[str | int], msg: str, detail: str | None = None) -> Problem:
    return InvalidData(detail or msg, errors=[{"loc": loc, "msg": msg}])
