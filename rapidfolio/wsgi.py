import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rapidfolio.settings")
application = get_wsgi_application()

from rapidfolio.startup import freeze_loaded_objects  # noqa: E402 (needs settings)

freeze_loaded_objects()
