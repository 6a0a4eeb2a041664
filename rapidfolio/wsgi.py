import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rapidfolio.settings")

from rapidfolio.handlers import get_application  # noqa: E402 (after the settings module is named)

# The dashboard's middleware stack, and a lean one for the HTTP API (rapidfolio/handlers.py).
application = get_application()

from rapidfolio.startup import freeze_loaded_objects  # noqa: E402 (needs settings)

freeze_loaded_objects()
