from django.urls import path

from apps.catalog import api

urlpatterns = [
    path("models", api.TemplateListView.as_view(), name="models"),
    # Deployment routes come before `models/<slug>` (no template is called "deployments").
    path("models/deployments", api.DeploymentListView.as_view(), name="deployments"),
    path(
        "models/deployments/<uuid:deployment_id>",
        api.DeploymentDetailView.as_view(),
        name="deployment-detail",
    ),
    path(
        "models/deployments/<uuid:deployment_id>/metrics",
        api.DeploymentMetricsView.as_view(),
        name="deployment-metrics",
    ),
    path(
        "models/deployments/<uuid:deployment_id>/economics",
        api.DeploymentEconomicsView.as_view(),
        name="deployment-economics",
    ),
    path(
        "models/deployments/<uuid:deployment_id>/events",
        api.DeploymentEventsView.as_view(),
        name="deployment-events",
    ),
    path(
        "models/deployments/<uuid:deployment_id>/keys/rotate",
        api.DeploymentKeyRotateView.as_view(),
        name="deployment-key-rotate",
    ),
    path(
        "models/deployments/<uuid:deployment_id>/keys",
        api.DeploymentKeysView.as_view(),
        name="deployment-keys",
    ),
    path(
        "models/deployments/<uuid:deployment_id>/keys/<uuid:key_id>",
        api.DeploymentKeyView.as_view(),
        name="deployment-key",
    ),
    path("models/<str:slug>", api.TemplateDetailView.as_view(), name="model-detail"),
    path("models/<str:slug>/deploy", api.DeployView.as_view(), name="model-deploy"),
    # Operators' cost analytics (sourcing's spend and margins plus the deployments').
    path(
        "dashboard/cost-analytics", api.CostAnalyticsView.as_view(), name="dashboard-cost-analytics"
    ),
]
