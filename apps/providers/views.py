"""The provider portal: register, the installer one-liner with a key shown once, keys, nodes
(telemetry, status, price), earnings chart and payouts. Views parse a form, call a providers
service or selector, and render; a user without a provider profile is sent to register."""

import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.billing.models import AccountKind, LedgerAccount, TransactionKind
from apps.billing.series import PERIODS, chart_points, entry_series, parse_period
from apps.core.gpu_models import CPU_MODEL
from apps.core.money import micros_to_usd, usd_to_micros
from apps.nodes.models import Node, NodeStatus
from apps.providers import selectors, services
from apps.providers.addresses import CHAINS, TOKEN_CHAINS, normalise_details
from apps.providers.addresses import payout_details_problems as details_problems
from apps.providers.models import Payout, PayoutMethod, PayoutStatus, Provider, ProviderKey
from apps.providers.pricing import price_bands

EARNINGS_TITLES = {
    "day": "this month, by day",
    "week": "the last 12 weeks",
    "month": "the last 12 months",
}
# The nodes list is re-fetched this often while a node is still coming up (or none exists).
NODES_POLL_MS = 2000


def provider_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Log in, and have a provider profile (else: the register page)."""

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        provider = Provider.objects.filter(owner_id=request.user.pk).first()
        if provider is None:
            return redirect("providers:register")
        return view(request, provider, *args, **kwargs)

    return wrapped


def install_command(request: HttpRequest) -> str:
    """The one-liner: it waits for the key to be pasted, so the key never lands in the shell's
    history or on a command line that `ps` shows (install.sh refuses it as an argument)."""
    url = request.build_absolute_uri(reverse("nodes-install"))
    return (
        "read -rsp 'Provider key: ' GCO_PROVIDER_KEY && export GCO_PROVIDER_KEY && "
        f"curl -fsSL {url} | sudo -E bash"
    )


# --- payout method fields (PayPal email, or a stablecoin wallet) ---------------------------------


class PayoutDetailsForm(forms.Form):
    """The method and its details, validated by the providers app's address checks; each error
    is shown on its own field."""

    method = forms.ChoiceField(choices=[("", "—"), *PayoutMethod.choices], required=False)
    paypal_email = forms.EmailField(required=False, label="PayPal email")
    currency = forms.ChoiceField(
        choices=[("", "—")] + [(c, c) for c in sorted(TOKEN_CHAINS)], required=False
    )
    chain = forms.ChoiceField(
        choices=[("", "—")] + [(c, c) for c in sorted(CHAINS)], required=False
    )
    address = forms.CharField(max_length=200, required=False, label="Wallet address")

    method_required = False
    FIELD_OF = {
        "details.email": "paypal_email",
        "details.currency": "currency",
        "details.chain": "chain",
        "details.address": "address",
        "method": "method",
    }

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        method = data.get("method") or ""
        if not method:
            if self.method_required:
                self.add_error("method", "Choose PayPal or crypto.")
            data["details"] = None
            return data
        if method == PayoutMethod.PAYPAL:
            details: dict[str, Any] = {"email": data.get("paypal_email") or ""}
        else:
            details = {k: (data.get(k) or "") for k in ("currency", "chain", "address")}
        problems = details_problems(method, details)
        for problem in problems:
            self.add_error(self.FIELD_OF.get(problem.field), problem.message)
        if not problems:
            data["details"] = normalise_details(method, details)
        return data

    @staticmethod
    def initial_for(method: str, details: dict[str, Any]) -> dict[str, Any]:
        initial: dict[str, Any] = {"method": method}
        if method == PayoutMethod.PAYPAL:
            initial["paypal_email"] = details.get("email", "")
        elif method:
            initial.update({k: details.get(k, "") for k in ("currency", "chain", "address")})
        return initial


class RegisterForm(PayoutDetailsForm):
    display_name = forms.CharField(
        max_length=100, help_text="Shown to operators; e.g. your company or rig name."
    )
    field_order = ["display_name", "method", "paypal_email", "currency", "chain", "address"]


class PayoutForm(PayoutDetailsForm):
    amount_usd = forms.DecimalField(
        label="Amount (USD)", min_value=Decimal("0.01"), max_digits=12, decimal_places=2
    )
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=255)
    method_required = True
    field_order = ["amount_usd", "method", "paypal_email", "currency", "chain", "address"]


class KeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Which machines use it, e.g. “rack 2”.")


# --- register and keys ---------------------------------------------------------------------------


@login_required
def register(request: HttpRequest) -> HttpResponse:
    """Become a provider: the profile and a first key, shown once with the install one-liner."""
    if Provider.objects.filter(owner_id=request.user.pk).exists():
        return redirect("providers:overview")
    form = RegisterForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            registered = services.provider_register(
                owner=request.user,  # type: ignore[arg-type]
                display_name=form.cleaned_data["display_name"],
                payout_method=form.cleaned_data.get("method") or "",
                payout_details=form.cleaned_data.get("details"),
            )
        except services.AlreadyProviderError:
            return redirect("providers:overview")
        return render(
            request,
            "providers/installed.html",
            {
                "provider": registered.provider,
                "created": registered.key,
                "install": install_command(request),
            },
            status=201,
        )
    return render(
        request, "providers/register.html", {"form": form}, status=400 if form.errors else 200
    )


@provider_required
def keys(request: HttpRequest, provider: Provider) -> HttpResponse:
    created = None
    form = KeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        created = services.provider_key_create(provider=provider, name=form.cleaned_data["name"])
        form = KeyForm()
    return render(
        request,
        "providers/keys.html",
        {
            "provider": provider,
            "form": form,
            "keys": ProviderKey.objects.filter(provider=provider).order_by("-created_at"),
            "created": created,
            "install": install_command(request) if created else None,
        },
        status=400 if form.errors else (201 if created else 200),
    )


@provider_required
@require_POST
def key_revoke(request: HttpRequest, provider: Provider, key_id: int) -> HttpResponse:
    key = get_object_or_404(ProviderKey, provider=provider, pk=key_id)
    services.provider_key_revoke(key=key)
    messages.success(
        request, f"Revoked key {key.name} ({key.prefix}…): it registers no more nodes."
    )
    return redirect("providers:keys")


# --- overview and earnings ----------------------------------------------------------------------


@provider_required
def overview(request: HttpRequest, provider: Provider) -> HttpResponse:
    """Earnings (today / 7 d / 30 d), balances, the earnings chart by day, week or month, and
    the nodes at a glance."""
    period = parse_period(request.GET.get("period"))
    dashboard = selectors.provider_dashboard(provider)
    payable = LedgerAccount.objects.filter(
        kind=AccountKind.PROVIDER_PAYABLE, provider_id=provider.pk
    )
    buckets = entry_series(
        accounts=payable, kind=TransactionKind.USAGE, period=period, now=timezone.now()
    )
    return render(
        request,
        "providers/overview.html",
        {
            "provider": provider,
            "dashboard": dashboard,
            "period": period,
            "periods": [(p, p.capitalize() + "s") for p in PERIODS],
            "earnings_title": EARNINGS_TITLES[period],
            "earnings_points": chart_points(buckets, period),
        },
    )


# --- nodes and pricing --------------------------------------------------------------------------


def _nodes_context(provider: Provider, errors: dict[str, str] | None = None) -> dict[str, Any]:
    nodes = list(selectors.provider_nodes(provider))
    models = {g.model for n in nodes for g in n.gpus.all()} or set()
    bands = price_bands(models | {CPU_MODEL})
    rows = []
    for node in nodes:
        gpus = sorted(node.gpus.all(), key=lambda g: g.index)
        node_models = {g.model for g in gpus} or {CPU_MODEL}
        node_bands = [bands[m] for m in sorted(node_models)]
        floor = max(b.floor for b in node_bands)
        ceiling = min(b.ceiling for b in node_bands)
        rows.append(
            {
                "node": node,
                "gpus": gpus,
                "floor_usd": micros_to_usd(floor, places=4),
                "ceiling_usd": micros_to_usd(ceiling, places=4),
                "price_usd": (
                    micros_to_usd(node.price_per_gpu_hour, places=4)
                    if node.price_per_gpu_hour is not None
                    else ""
                ),
                "error": (errors or {}).get(str(node.pk)),
            }
        )
    settling = not nodes or any(n.status == NodeStatus.REGISTERING for n in nodes)
    return {"provider": provider, "rows": rows, "poll_ms": NODES_POLL_MS if settling else None}


@provider_required
def nodes(request: HttpRequest, provider: Provider) -> HttpResponse:
    """The provider's nodes with GPU telemetry, status and a price form each. While no node has
    come up yet the list polls itself, so a freshly installed agent appears by itself."""
    context = _nodes_context(provider)
    if request.headers.get("X-Requested-With") == "fetch":
        return render(request, "providers/_nodes.html", context)
    return render(request, "providers/nodes.html", context)


@provider_required
@require_POST
def node_price(request: HttpRequest, provider: Provider, node_id: uuid.UUID) -> HttpResponse:
    """Set the node's asking price (USD per GPU-hour) within the operator's band."""
    node = get_object_or_404(Node, provider_id=provider.pk, pk=node_id)
    raw = (request.POST.get("price_usd") or "").strip()
    error = None
    try:
        price = Decimal(raw)
        if not price.is_finite() or price <= 0 or price.as_tuple().exponent < -6:  # type: ignore[operator]
            raise InvalidOperation
    except InvalidOperation:
        error = "A price in US dollars per GPU-hour, e.g. 0.69 (up to 6 decimals)."
    else:
        try:
            services.node_pricing_set(node=node, price_per_gpu_hour=usd_to_micros(price))
        except services.PriceOutOfBandError as exc:
            error = str(exc)
    if error:
        context = _nodes_context(provider, errors={str(node.pk): error})
        return render(request, "providers/nodes.html", context, status=400)
    messages.success(request, f"{node.hostname}: ${micros_to_usd(usd_to_micros(price), 4)}/GPU-h.")
    return redirect("providers:nodes")


# --- payouts ------------------------------------------------------------------------------------


@provider_required
def payouts(request: HttpRequest, provider: Provider) -> HttpResponse:
    """Request a payout (the form carries an idempotency key: a double submit is one payout)
    and the history."""
    if request.method == "POST":
        form = PayoutForm(request.POST)
        if form.is_valid():
            try:
                requested = services.payout_request(
                    provider=provider,
                    amount=usd_to_micros(form.cleaned_data["amount_usd"]),
                    method=form.cleaned_data["method"],
                    details=form.cleaned_data["details"],
                    idempotency_key=form.cleaned_data["idempotency_key"],
                )
            except services.PayoutError as exc:
                field = "amount_usd" if exc.field in (None, "amount_usd") else None
                form.add_error(field, str(exc))
            else:
                payout = requested.payout
                if requested.created:
                    messages.success(
                        request,
                        f"Payout of ${micros_to_usd(payout.amount)} requested: an operator"
                        " approves it, then it is sent.",
                    )
                else:
                    messages.info(request, "That request was already received (same form).")
                return redirect("providers:payouts")
    else:
        initial = PayoutDetailsForm.initial_for(provider.payout_method, provider.payout_details)
        form = PayoutForm(initial={**initial, "idempotency_key": str(uuid.uuid4())})
    balances = selectors.provider_balances(provider)
    return render(
        request,
        "providers/payouts.html",
        {
            "provider": provider,
            "form": form,
            "balances": balances,
            "payouts": Payout.objects.for_provider(provider)[:200],
            "pending_statuses": [PayoutStatus.REQUESTED, PayoutStatus.APPROVED],
        },
        status=400 if form.errors else 200,
    )
