from django.urls import path

from apps.sourcing import api

urlpatterns = [
    path("dashboard/overview", api.OverviewView.as_view(), name="dashboard-overview"),
    path(
        "dashboard/provider-health",
        api.ProviderHealthView.as_view(),
        name="dashboard-provider-health",
    ),
    path(
        "dashboard/provider-health/<str:provider>/reset",
        api.ProviderResetView.as_view(),
        name="dashboard-provider-reset",
    ),
    path(
        "dashboard/gpu-availability",
        api.GpuAvailabilityView.as_view(),
        name="dashboard-gpu-availability",
    ),
    path("dashboard/gpu-offers", api.GpuOffersView.as_view(), name="dashboard-gpu-offers"),
    path(
        "dashboard/price-comparison",
        api.PriceComparisonView.as_view(),
        name="dashboard-price-comparison",
    ),
]
