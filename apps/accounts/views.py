"""The customer portal's own pages: the dashboard and personal API keys. Views parse, call a
service or selector, and render."""

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.accounts.models import ApiKey
from apps.accounts.services import api_key_create, api_key_revoke
from apps.billing.selectors import daily_usage_spend, wallet_balance
from apps.billing.spend import month_start
from apps.core.money import micros_to_usd
from apps.pods.models import PodStatus
from apps.pods.selectors import user_pods


def _spend_usd(micros: int) -> str:
    """Cents, or tenths of a cent while the total is under a dollar (a few minutes of a
    cheap pod would otherwise read $0.00)."""
    return micros_to_usd(micros, places=4 if 0 < micros < 1_000_000 else 2)


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Balance, running pods and this month's spend by day."""
    now = timezone.now()
    start = month_start(now)
    per_day = daily_usage_spend(request.user, since=start, until=now)  # type: ignore[arg-type]
    days = []
    day = start.date()
    while day <= now.date():
        micros = per_day.get(day, 0)
        days.append(
            {
                "label": day.isoformat(),
                "short": str(day.day),
                "value": micros_to_usd(micros, places=6),  # a string: the chart parses it
            }
        )
        day += timedelta(days=1)
    pods = list(user_pods(request.user, active_only=True)[:20])
    balance = wallet_balance(request.user)  # type: ignore[arg-type]
    burn = sum(p.hourly_rate for p in pods if p.status == PodStatus.RUNNING)
    context = {
        "balance_usd": micros_to_usd(balance),
        # Whole hours the balance lasts at the current burn (None: nothing is running).
        "hours_left": max(balance, 0) // burn if burn else None,
        "month_spent_usd": _spend_usd(sum(per_day.values())),
        "month_label": f"{start:%B %Y}",
        "spend_days": days,
        "pods": pods,
        "burn_usd": micros_to_usd(burn),
    }
    return render(request, "accounts/dashboard.html", context)


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses this key, e.g. “laptop”.")


@login_required
def api_keys(request: HttpRequest) -> HttpResponse:
    """List the user's keys; a POST creates one and shows it this once."""
    created = None
    if request.method == "POST":
        form = ApiKeyForm(request.POST)
        if form.is_valid():
            created = api_key_create(user=request.user, name=form.cleaned_data["name"])  # type: ignore[arg-type]
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
