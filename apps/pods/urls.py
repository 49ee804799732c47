from django.urls import path

from apps.pods import api

urlpatterns = [
    path("pods/", api.PodListView.as_view(), name="pods"),
    path("pods/<uuid:pod_id>", api.PodDetailView.as_view(), name="pod-detail"),
    path("pods/<uuid:pod_id>/stop", api.PodStopView.as_view(), name="pod-stop"),
    path("pods/<uuid:pod_id>/events", api.PodEventsView.as_view(), name="pod-events"),
    path("pods/<uuid:pod_id>/logs", api.PodLogsView.as_view(), name="pod-logs"),
    path("users/usage", api.UsageView.as_view(), name="users-usage"),
]
