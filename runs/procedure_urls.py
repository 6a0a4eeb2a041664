"""The procedure pages' URLs (mounted at /procedures/, names "procedures:…").

They live in runs, above procedures, because the detail page and its Run action are runs' views
(runs.procedure_views); the list page is procedures' own.
"""

from django.urls import path

from procedures.views import procedure_list
from runs.procedure_views import procedure_detail, start

app_name = "procedures"

urlpatterns = [
    path("", procedure_list, name="list"),
    path("<str:public_id>/", procedure_detail, name="detail"),
    path("<str:public_id>/run/", start, name="start"),
]
