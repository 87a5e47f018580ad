"""ASGI entry point, served by uvicorn (``manage.py serve`` or ``uvicorn core.asgi:application``)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402 - settings are ready only after the line above
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402

application: ASGIHandler | ASGIStaticFilesHandler = (
    ASGIStaticFilesHandler(django_application) if settings.SERVE_STATIC else django_application
)
