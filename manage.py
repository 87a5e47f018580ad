#!/usr/bin/env python
"""Django's command-line utility for administrative tasks.

``python manage.py COMMAND`` works with any Python 3: one that lacks the project's
packages (the system's) runs the command again with the checkout's ``.venv``, which
``make install`` and ``make run`` create. A setting that is missing or wrong is reported
in one line, not a traceback.
"""

import os
import sys
from pathlib import Path

VENV = Path(__file__).resolve().parent / ".venv"


def _with_the_checkouts_venv() -> None:
    try:
        import django  # noqa: F401
    except ModuleNotFoundError:
        python = VENV / "bin" / "python"
        in_venv = Path(sys.prefix).resolve() == VENV.resolve()
        if python.exists() and not in_venv:
            os.execv(str(python), [str(python), *sys.argv])  # noqa: S606 - the same command
        sys.exit(
            "manage.py: Django is not installed for this Python. Run `make install` (or "
            "`make run`) in the checkout first: it creates .venv with the dependencies."
        )


def main() -> None:
    _with_the_checkouts_venv()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as error:
        sys.exit(f"manage.py: {error}")


if __name__ == "__main__":
    main()
