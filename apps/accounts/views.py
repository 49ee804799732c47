"""The customer portal's own pages: the dashboard and personal API keys. Views parse, call a
service or selector, and render."""

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.accounts.models import ApiKey, ApiKeyScope, all_scopes
from apps.accounts.services import ApiKeyInputError, api_key_create, api_key_revoke
from apps.accounts.ssh_keys import MAX_KEY_CHARS, SshKeyError, keys_of, ssh_key_add, ssh_key_delete
from apps.billing.models import AccountKind, LedgerAccount, TransactionKind
from apps.billing.selectors import wallet_balance
from apps.billing.series import PERIODS, chart_points, entry_series, parse_period
from apps.catalog.models import Deployment
from apps.core.money import micros_to_usd
from apps.pods.models import PodStatus
from apps.pods.selectors import user_pods


def _spend_usd(micros: int) -> str:
    """Cents, or tenths of a cent while the total is under a dollar (a few minutes of a
    cheap pod would otherwise read $0.00)."""
    return micros_to_usd(micros, places=4 if 0 < micros < 1_000_000 else 2)


SPEND_TITLES = {
    "day": "this month, by day",
    "week": "the last 12 weeks",
    "month": "the last 12 months",
}


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Balance, active pods, and usage charges as a chart (this month by day, or by week or
    month with ?period=)."""
    user: Any = request.user
    period = parse_period(request.GET.get("period"))
    now = timezone.now()
    wallets = LedgerAccount.objects.filter(kind=AccountKind.USER_WALLET, user=user)
    buckets = entry_series(
        accounts=wallets, kind=TransactionKind.USAGE, period=period, now=now, negate=True
    )
    pods = list(user_pods(user, active_only=True)[:20])
    balance = wallet_balance(user)
    burn = sum(p.hourly_rate for p in pods if p.status == PodStatus.RUNNING)
    this_month = (
        buckets
        if period == "day"
        else entry_series(
            accounts=wallets, kind=TransactionKind.USAGE, period="day", now=now, negate=True
        )
    )
    context = {
        "balance_usd": micros_to_usd(balance),
        # Whole hours the balance lasts at the current burn (None: nothing is running).
        "hours_left": max(balance, 0) // burn if burn else None,
        "month_spent_usd": _spend_usd(sum(b.micros for b in this_month)),
        "month_label": f"{now:%B %Y}",
        "period": period,
        "periods": [(p, p.capitalize() + "s") for p in PERIODS],
        "spend_title": SPEND_TITLES[period],
        "spend_points": chart_points(buckets, period),
        "pods": pods,
        "deployments": list(Deployment.objects.for_user(user).live().order_by("-created_at")[:10]),
        "burn_usd": micros_to_usd(burn),
    }
    return render(request, "accounts/dashboard.html", context)


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
