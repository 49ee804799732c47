from django.urls import path

from apps.providers import api

urlpatterns = [
    path("providers/register", api.RegisterView.as_view(), name="providers-register"),
    path("providers/me", api.MeView.as_view(), name="providers-me"),
    path("providers/keys", api.KeyListView.as_view(), name="providers-keys"),
    path("providers/keys/<int:key_id>", api.KeyDetailView.as_view(), name="providers-key"),
    path("providers/nodes", api.NodeListView.as_view(), name="providers-nodes"),
    path(
        "providers/nodes/<uuid:node_id>/pricing",
        api.NodePricingView.as_view(),
        name="providers-node-pricing",
    ),
    path("providers/dashboard", api.DashboardView.as_view(), name="providers-dashboard"),
    path("providers/payouts", api.PayoutListView.as_view(), name="providers-payouts"),
    path(
        "providers/payouts/request",
        api.PayoutRequestView.as_view(),
        name="providers-payout-request",
    ),
    path(
        "providers/payouts/<uuid:payout_id>",
        api.PayoutDetailView.as_view(),
        name="providers-payout",
    ),
]
