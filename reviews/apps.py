from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_roles(sender, **kwargs):
    from rapidfolio.roles import ensure_roles

    ensure_roles()


class ReviewsConfig(AppConfig):
    name = "reviews"

    def ready(self):
        # Imported here, not at the top: Django loads apps.py before the models exist.
        from reviews import integrity
        from reviews.nodes import HumanReviewNode
        from runs.engine import registry

        # Runs after auth has created this app's permissions (reviews is the last of our apps).
        post_migrate.connect(_ensure_roles, sender=self, dispatch_uid="rapidfolio_roles")
        registry.register(HumanReviewNode())
        integrity.register()
