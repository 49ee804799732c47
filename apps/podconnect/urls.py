from django.urls import path

from apps.podconnect import api

urlpatterns = [
    path(
        "pods/<uuid:pod_id>/access-tokens",
        api.TokenListView.as_view(),
        name="pod-access-tokens",
    ),
    path(
        "pods/<uuid:pod_id>/access-tokens/<int:token_id>",
        api.TokenRevokeView.as_view(),
        name="pod-access-token",
    ),
]
