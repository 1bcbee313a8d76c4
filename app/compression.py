"""gzip for the clients that ask for it (`Accept-Encoding: gzip`): the pages, the API's JSON,
CSV and GeoJSON, the static files (the DSFR's stylesheet is 728 KB, 94 KB compressed).

Starlette's GZipMiddleware does the work: it leaves alone answers under `minimum_size`, those
already encoded, partial ones (206) and images, fonts and event streams; compresses a streamed
answer chunk by chunk; and compresses a large body in a worker thread, off the event loop. It
keeps each answer's ETag: the API's `If-Match` compares the version the ETag names, and static
files still answer 304 to `If-None-Match`. Around it, this module adds two things:

- a request that does not accept gzip goes straight to the application, without the
  middleware's buffering of the answer's start (the hot path, POST /v1/orientations, is
  measured against a bare app: `make bench`), except under the static paths, the only answers
  a cache may keep (app.guard), which say `Vary: Accept-Encoding` either way;
- `gzip;q=0` means no gzip (Starlette's test only looks for the word).

Level 6, zlib's default: on the national coverage page, level 9 takes twice as long for 1 %
less. Session cookies are `SameSite=Strict`, so a page compressed with a secret in it (the CSRF
token) is never one that another site made the browser ask for (BREACH)."""

from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

# Answers a cache may keep (app.guard gives them a max-age): they vary on Accept-Encoding.
CACHEABLE = ("/static/", "/static-offline-docs/")
LEVEL = 6


def accepts_gzip(scope: Scope) -> bool:
    """Whether the request's Accept-Encoding lists gzip with a non-zero quality."""
    for name, value in scope["headers"]:
        if name != b"accept-encoding":
            continue
        for coding in value.decode("latin-1").lower().split(","):
            token, _, params = coding.partition(";")
            if token.strip() != "gzip":
                continue
            quality = params.strip().removeprefix("q=")
            try:
                return not params.strip() or float(quality) > 0
            except ValueError:
                return False
    return False


class Compression:
    def __init__(self, app: ASGIApp, minimum_size: int = 500) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size, compresslevel=LEVEL)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (accepts_gzip(scope) or scope["path"].startswith(CACHEABLE)):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)
