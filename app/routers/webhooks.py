"""HTTP layer of webhook subscriptions."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from starlette.concurrency import run_in_threadpool

from app.auth import Require
from app.deps import DbDep
from app.errors import api_problems, problem_responses
from app.models import Principal, Role
from app.notifications import webhooks as service
from app.notifications.models import WebhookCreated, WebhookIn, WebhookOut
from app.problems import NotFound

router = APIRouter(
    prefix="/v1/webhooks",
    tags=["webhooks"],
    responses=api_problems(),
)
Subscriber = Annotated[Principal, Depends(Require(Role.AGENT, Role.MEDIATEUR, Role.ADMIN))]


@router.post(
    "",
    response_model=WebhookCreated,
    status_code=201,
    summary="Suivre les événements des orientations de mon lieu",
    description=(
        "Chaque événement suivi d'une orientation envoyée ou reçue par votre lieu (pour un "
        "administrateur : de toutes) est envoyé en POST à `url`, signé selon la spécification "
        "Standard Webhooks (en-têtes `webhook-id`, `webhook-timestamp`, `webhook-signature`, "
        "HMAC-SHA256 avec le secret `whsec_…` rendu ici une seule fois), et renvoyé avec un "
        'délai croissant tant que la réponse n\'est pas 2xx. Le corps : `{"type", '
        '"timestamp", "data": {"id", "code", "status", "event", …}}` ; '
        "dédoublonnez par `webhook-id`. https:// seulement ; jamais une adresse privée."
    ),
)
async def create_webhook(data: WebhookIn, principal: Subscriber, db: DbDep) -> Any:
    await run_in_threadpool(service.check_webhook, data, db.settings)  # resolves the host
    return await db.write(lambda session: service.create_webhook(session, principal, data))


@router.get(
    "",
    response_model=list[WebhookOut],
    summary="Mes webhooks",
    description=(
        "Les webhooks de votre lieu. Un administrateur voit les siens (qui suivent tous les "
        "lieux) ou, avec `place_id`, ceux d'un lieu, qu'il peut supprimer."
    ),
    responses=problem_responses(NotFound),
)
async def list_webhooks(
    principal: Subscriber,
    db: DbDep,
    place_id: Annotated[
        str | None, Query(max_length=64, description="Les webhooks de ce lieu seulement.")
    ] = None,
) -> Any:
    return await db.read(lambda session: service.list_webhooks(session, principal, place_id))


@router.delete(
    "/{webhook_id}",
    status_code=204,
    summary="Ne plus suivre",
    description="Un webhook de votre lieu ; un administrateur, celui de n'importe quel lieu.",
    responses=problem_responses(NotFound),
)
async def delete_webhook(webhook_id: str, principal: Subscriber, db: DbDep) -> Response:
    await db.write(lambda session: service.delete_webhook(session, principal, webhook_id))
    return Response(status_code=204)
