"""Portal pages of the podconnect app, under /pods/ beside the pods app's own pages."""

from django.urls import path

from apps.podconnect import views

app_name = "podconnect"
urlpatterns = [
    path("<uuid:pod_id>/terminal/", views.terminal, name="terminal"),
    path("<uuid:pod_id>/access/", views.access_page, name="access"),
    path("<uuid:pod_id>/access/<int:token_id>/revoke", views.token_revoke, name="token_revoke"),
]
