from django.urls import path

from procedures import views

app_name = "procedures"

urlpatterns = [
    path("", views.procedure_list, name="list"),
    path("<str:public_id>/", views.procedure_detail, name="detail"),
    path("<str:public_id>/run/", views.start, name="start"),
]
