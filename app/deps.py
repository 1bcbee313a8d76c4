"""The request's dependencies, one place for the API's routes and the web pages.

app.db and the services know no HTTP; this module is where a request meets them."""

from typing import Annotated

from fastapi import Depends, Request

from app.db import Db


def db_of(request: Request) -> Db:
    """The process's database handle (created by app.main.create_app), for a route or a page
    that has the request at hand."""
    return request.app.state.db  # type: ignore[no-any-return]


async def get_db(request: Request) -> Db:
    # async: FastAPI would otherwise send this plain attribute read to a thread.
    return db_of(request)


DbDep = Annotated[Db, Depends(get_db)]
