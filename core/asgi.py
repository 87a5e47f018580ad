"""ASGI entry point, served by uvicorn (``manage.py serve`` or ``uvicorn core.asgi:application``).

HTTP goes to Django, except the API reads graphql_api/direct.py answers itself (a
``POST /graphql/`` its compiled plan covers; it hands everything else to Django); WebSocket connections to ``/graphql/`` go to the GraphQL WebSocket
endpoint (graphql_api/websocket.py), others are refused. At shutdown (the ASGI lifespan
protocol), the live stream's connections are closed.
"""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402 - settings are ready only after the line above
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402

from audit.stream import stream_hubs_stop  # noqa: E402
from graphql_api import direct  # noqa: E402
from graphql_api.websocket import graphql_websocket  # noqa: E402

http_application: ASGIHandler | ASGIStaticFilesHandler = (
    ASGIStaticFilesHandler(django_application) if settings.SERVE_STATIC else django_application
)


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await stream_hubs_stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        if scope["path"] == "/graphql/":
            await graphql_websocket(scope, receive, send)  # type: ignore[arg-type]
        else:
            await send({"type": "websocket.close", "code": 4404})
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http" and scope["path"] == "/graphql/":
        await direct.serve(scope, receive, send, http_application)
    else:
        await http_application(scope, receive, send)
