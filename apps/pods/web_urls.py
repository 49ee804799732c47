"""Portal pages of the pods app (the API's routes are in urls.py, under /api/v1/)."""

from django.urls import path

from apps.pods import views, volume_views

app_name = "pods"
urlpatterns = [
    path("", views.pod_list, name="list"),
    path("table", views.pod_table_fragment, name="table"),
    path("new/", views.pod_create, name="create"),
    path("offers.json", views.offers_json, name="offers"),
    path("volumes/", volume_views.volume_list, name="volumes"),
    path("volumes/<uuid:volume_id>/delete", volume_views.volume_delete, name="volume_delete"),
    path("<uuid:pod_id>/", views.pod_detail, name="detail"),
    path("<uuid:pod_id>/status", views.pod_status_fragment, name="status"),
    path("<uuid:pod_id>/stop", views.pod_stop, name="stop"),
    path("<uuid:pod_id>/resume", views.pod_resume, name="resume"),
    path("<uuid:pod_id>/remove", views.pod_remove, name="remove"),
    path("<uuid:pod_id>/logs", views.pod_logs_request, name="logs_request"),
    path("<uuid:pod_id>/logs/<uuid:command_id>", views.pod_logs, name="logs"),
]
