from django.urls import path

from apps.pods import api

urlpatterns = [
    path("pods/", api.PodListView.as_view(), name="pods"),
    path("pods/<uuid:pod_id>", api.PodDetailView.as_view(), name="pod-detail"),
    path("pods/<uuid:pod_id>/stop", api.PodStopView.as_view(), name="pod-stop"),
    path("pods/<uuid:pod_id>/resume", api.PodResumeView.as_view(), name="pod-resume"),
    path("volumes/", api.VolumeListView.as_view(), name="volumes"),
    path("volumes/<uuid:volume_id>", api.VolumeDetailView.as_view(), name="volume-detail"),
    path("pod-templates/", api.TemplateListView.as_view(), name="pod-templates"),
    path(
        "pod-templates/<uuid:template_id>",
        api.TemplateDetailView.as_view(),
        name="pod-template-detail",
    ),
    path("pods/<uuid:pod_id>/events", api.PodEventsView.as_view(), name="pod-events"),
    path("pods/<uuid:pod_id>/logs", api.PodLogsView.as_view(), name="pod-logs"),
    path("users/usage", api.UsageView.as_view(), name="users-usage"),
]
