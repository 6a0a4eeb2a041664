from django.urls import path

from reviews import views

app_name = "reviews"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("<str:public_id>/approve/", views.approve, name="approve"),
    path("<str:public_id>/reject/", views.reject, name="reject"),
]
