from django.urls import path, re_path

from runs import export_views, views

app_name = "runs"

urlpatterns = [
    path("", views.run_list, name="list"),
    # The list's filters as a download: every matching run, streamed (runs/export.py).
    path("export.csv", export_views.export_csv, name="export_csv"),
    path("export.jsonl", export_views.export_json_lines, name="export_jsonl"),
    path("<str:public_id>/", views.run_detail, name="detail"),
    path("<str:public_id>/cancel/", views.cancel, name="cancel"),
    path("<str:public_id>/retry/", views.retry, name="retry"),
    path("<str:public_id>/integrity/", views.integrity, name="integrity"),
    path("<str:public_id>/row/", views.run_row, name="row"),
    path("<str:public_id>/evidence.json", views.evidence_bundle, name="evidence"),
    # Each tab but the overview has its own URL, so any tab can be bookmarked or shared.
    re_path(
        r"^(?P<public_id>[^/]+)/(?P<tab>inputs|step-log|output|events)/$",
        views.run_detail,
        name="tab",
    ),
]
