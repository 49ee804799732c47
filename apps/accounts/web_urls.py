"""Portal pages of the accounts app (the API's routes are in urls.py, under /api/v1/)."""

from django.urls import path

from apps.accounts import views

app_name = "accounts"
urlpatterns = [
    path("api-keys/", views.api_keys, name="api_keys"),
    path("api-keys/<uuid:key_id>/revoke", views.api_key_revoke_view, name="api_key_revoke"),
    path("ssh-keys/", views.ssh_keys, name="ssh_keys"),
    path("ssh-keys/<uuid:key_id>/delete", views.ssh_key_delete_view, name="ssh_key_delete"),
]
