"""Catalog pages of the portal (the API's routes are in urls.py, under /api/v1/models)."""

from django.urls import path

from apps.catalog import views

app_name = "catalog"
urlpatterns = [
    path("", views.catalog, name="catalog"),
    path("deployments/", views.deployment_list, name="deployments"),
    path("deployments/<uuid:deployment_id>/", views.deployment_detail, name="deployment"),
    path("deployments/<uuid:deployment_id>/stop", views.deployment_stop, name="stop"),
    path(
        "deployments/<uuid:deployment_id>/rotate-key",
        views.deployment_rotate_key,
        name="rotate_key",
    ),
    path(
        "deployments/<uuid:deployment_id>/scaling",
        views.deployment_scaling,
        name="scaling",
    ),
    path("<str:slug>/deploy/", views.model_deploy, name="deploy"),
]
