from django.urls import path

from apps.webhooks import api

urlpatterns = [
    path("webhooks/endpoints", api.EndpointListView.as_view(), name="webhook-endpoints"),
    path(
        "webhooks/endpoints/<uuid:endpoint_id>",
        api.EndpointDetailView.as_view(),
        name="webhook-endpoint-detail",
    ),
    path(
        "webhooks/endpoints/<uuid:endpoint_id>/deliveries",
        api.DeliveryListView.as_view(),
        name="webhook-deliveries",
    ),
]
