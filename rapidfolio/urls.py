from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from health_check import Database

from rapidfolio import account_views, health, metrics
from rapidfolio.api import api
from reviews.views import home
from runs import health as runs_health
from runs import webhook_receiver

# The Security page: set up, confirm, cancel or remove two-factor sign-in.
security_urls = [
    path("", account_views.security, name="account_security"),
    path("start/", account_views.security_start, name="account_security_start"),
    path("confirm/", account_views.security_confirm, name="account_security_confirm"),
    path("cancel/", account_views.security_cancel, name="account_security_cancel"),
    path("remove/", account_views.security_remove, name="account_security_remove"),
]

# /readyz, in order: a check that needs the database is not tried once the database failed.
readiness_checks = {
    "database": Database(),
    "migrations": health.Migrations(),
    "broker": health.Broker(),
    "scheduler": runs_health.SchedulerRunning(),
    "ledger_sealer": runs_health.LedgerSealing(),
}

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readiness_view(readiness_checks), name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("", home, name="home"),
    path("login/", account_views.SignInView.as_view(), name="login"),
    path("login/code/", account_views.sign_in_code, name="login_code"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/security/", include(security_urls)),
    path("account/time-zone/", account_views.time_zone, name="account_time_zone"),
    path("runs/", include("runs.urls")),
    path("reviews/", include("reviews.urls")),
    path("procedures/", include("runs.procedure_urls")),
    # Where the demo's outbound webhook endpoint delivers (manage.py seed_demo).
    path("hooks/demo-receiver/", webhook_receiver.receive, name="demo_webhook_receiver"),
    path("hooks/", include("runs.triggers.urls")),
    path("v1/", api.urls),
    path("admin/", admin.site.urls),
]
