"""The accounts pages of the portal: personal API and SSH keys. (The dashboard composes several
apps, so it is apps.portal's.) Views parse, call a service or selector, and render."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.models import ApiKey, ApiKeyScope, all_scopes
from apps.accounts.services import ApiKeyInputError, api_key_create, api_key_revoke
from apps.accounts.ssh_keys import MAX_KEY_CHARS, SshKeyError, keys_of, ssh_key_add, ssh_key_delete


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses this key, e.g. “laptop”.")
    scopes = forms.MultipleChoiceField(
        choices=ApiKeyScope.choices,
        initial=all_scopes,
        widget=forms.CheckboxSelectMultiple,
        help_text="“Read anything” allows every GET; each other scope reads and writes its area.",
    )
    expires_at = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Optional (UTC). After this, requests with the key get 401.",
    )


@login_required
def api_keys(request: HttpRequest) -> HttpResponse:
    """List the user's keys; a POST creates one and shows it this once."""
    created = None
    if request.method == "POST":
        form = ApiKeyForm(request.POST)
        if form.is_valid():
            try:
                created = api_key_create(user=request.user, **form.cleaned_data)  # type: ignore[arg-type]
            except ApiKeyInputError as exc:
                form.add_error(exc.field, str(exc))
            else:
                form = ApiKeyForm()
    else:
        form = ApiKeyForm()
    keys = ApiKey.objects.for_user(request.user)  # type: ignore[arg-type]
    status = 400 if form.errors else 200
    return render(
        request,
        "accounts/api_keys.html",
        {"form": form, "keys": keys, "created": created},
        status=status,
    )


@login_required
@require_POST
def api_key_revoke_view(request: HttpRequest, key_id: str) -> HttpResponse:
    api_key = get_object_or_404(ApiKey.objects.for_user(request.user), pk=key_id)  # type: ignore[arg-type]
    api_key_revoke(api_key=api_key)
    messages.success(request, f"Revoked {api_key}. Requests with it now get 401.")
    return redirect("accounts:api_keys")


class SshKeyForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="e.g. “laptop”.")
    public_key = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=MAX_KEY_CHARS,
        help_text="The line of your ~/.ssh/id_ed25519.pub (or id_rsa.pub).",
    )


@login_required
def ssh_keys(request: HttpRequest) -> HttpResponse:
    """List the user's SSH keys; a POST adds one. Pods started afterwards get them all."""
    form = SshKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            key = ssh_key_add(user=request.user, **form.cleaned_data)  # type: ignore[arg-type]
        except SshKeyError as exc:
            form.add_error("public_key", str(exc))
        else:
            messages.success(request, f"Added {key.name} ({key.fingerprint}).")
            return redirect("accounts:ssh_keys")
    keys = keys_of(request.user)
    status = 400 if form.errors else 200
    return render(request, "accounts/ssh_keys.html", {"form": form, "keys": keys}, status=status)


@login_required
@require_POST
def ssh_key_delete_view(request: HttpRequest, key_id: str) -> HttpResponse:
    key = get_object_or_404(keys_of(request.user), pk=key_id)
    ssh_key_delete(key=key)
    messages.success(request, f"Removed {key.name}. New pods no longer get it.")
    return redirect("accounts:ssh_keys")
