from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from rapidfolio.api import api
from reviews.views import home

urlpatterns = [
    path("", home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("runs/", include("runs.urls")),
    path("reviews/", include("reviews.urls")),
    path("procedures/", include("runs.procedure_urls")),
    path("hooks/", include("runs.triggers.urls")),
    path("v1/", api.urls),
    path("admin/", admin.site.urls),
]
