from django.urls import re_path

from runs.triggers import hooks

app_name = "hooks"

# The trailing slash is optional: senders are configured with whatever admin shows.
urlpatterns = [
    re_path(r"^stripe/(?P<public_id>[\w-]+)/?$", hooks.stripe_hook, name="stripe"),
    re_path(r"^linear/(?P<public_id>[\w-]+)/?$", hooks.linear_hook, name="linear"),
]
