from django.urls import path

from apps.accounts import api

urlpatterns = [
    path("auth/register", api.RegisterView.as_view(), name="auth-register"),
    path("auth/login", api.LoginView.as_view(), name="auth-login"),
    path("auth/me", api.MeView.as_view(), name="auth-me"),
    path("auth/api-keys", api.ApiKeyListView.as_view(), name="api-keys"),
    path("auth/api-keys/<uuid:key_id>", api.ApiKeyDetailView.as_view(), name="api-key-detail"),
    path("auth/ssh-keys", api.SshKeyListView.as_view(), name="ssh-keys"),
    path("auth/ssh-keys/<uuid:key_id>", api.SshKeyDetailView.as_view(), name="ssh-key-detail"),
]
