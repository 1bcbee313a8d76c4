"""create_app(): routers, error handlers, body-size guard."""

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import errors
from app.config import get_settings
from app.routers import health, orientations, places, reference, referrals


class BodyLimit:
    """Reads the request body up front and refuses it past `limit` bytes with a 413 problem,
    whether or not the client announced a Content-Length."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                response = errors.problem_response(
                    413,
                    f"Corps de requête trop volumineux : {self.limit} octets au maximum.",
                    slug="trop-volumineux",
                )
                await response(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def create_app() -> FastAPI:
    app = FastAPI(
        title="Passerelle",
        version="0.1.0",
        description=(
            "Orientation des personnes depuis l'accueil France Services vers la médiation "
            "numérique, selon la typologie d'autonomie numérique."
        ),
    )
    errors.install(app)
    for module in (health, reference, orientations, referrals, places):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, limit=get_settings().max_body_bytes)
    return app
