"""Portal pages of the webhooks app (mounted under /settings/webhooks/)."""

from django.urls import path

from apps.webhooks import views

app_name = "webhooks"
urlpatterns = [
    path("", views.endpoints, name="endpoints"),
    path("<uuid:endpoint_id>/", views.deliveries, name="deliveries"),
    path("<uuid:endpoint_id>/delete", views.endpoint_delete, name="endpoint_delete"),
]
