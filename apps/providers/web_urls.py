"""Provider portal pages (the API's routes are in urls.py, under /api/v1/providers/)."""

from django.urls import path

from apps.providers import views

app_name = "providers"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("register/", views.register, name="register"),
    path("keys/", views.keys, name="keys"),
    path("keys/<int:key_id>/revoke", views.key_revoke, name="key_revoke"),
    path("nodes/", views.nodes, name="nodes"),
    path("nodes/<uuid:node_id>/price", views.node_price, name="node_price"),
    path("payouts/", views.payouts, name="payouts"),
]
