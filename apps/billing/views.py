"""Portal pages for money: top-up through Stripe Checkout (credited only by the verified
webhook), the wallet's transactions and the pods' usage, both filterable and exportable as
CSV. Views parse, call a service or selector, and render; everything is the signed-in user's."""

import csv
import logging
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import stripe
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from apps.billing import selectors
from apps.billing.models import Transaction, TransactionKind
from apps.billing.services import (
    StripeNotConfiguredError,
    checkout_session_create,
    spend_limits_set,
)
from apps.core.money import micros_to_usd, usd_to_micros

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
TOPUP_MIN_USD = Decimal("5.00")
TOPUP_MAX_USD = Decimal("10000.00")


class TopUpForm(forms.Form):
    amount_usd = forms.DecimalField(
        label="Amount (USD)",
        min_value=TOPUP_MIN_USD,
        max_value=TOPUP_MAX_USD,
        max_digits=7,
        decimal_places=2,
        initial=Decimal("25.00"),
    )
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=64)


@login_required
def topup(request: HttpRequest) -> HttpResponse:
    """Start a Stripe Checkout for the amount. Nothing is credited here: the browser goes on
    to Stripe's page, and the balance moves when Stripe's signed webhook arrives."""
    user: Any = request.user
    if request.method == "POST":
        form = TopUpForm(request.POST)
        if form.is_valid():
            try:
                session = checkout_session_create(
                    user=user,
                    amount_micros=usd_to_micros(form.cleaned_data["amount_usd"]),
                    idempotency_key=f"deposit:{user.pk}:portal:{form.cleaned_data['idempotency_key']}",
                )
            except StripeNotConfiguredError as exc:
                form.add_error(None, str(exc))
            except stripe.IdempotencyError:
                form.add_error(None, "This form was already used for another amount; reload it.")
            except stripe.StripeError:
                logger.exception("stripe: creating a checkout session from the portal failed")
                form.add_error(
                    None,
                    "The payment provider could not start the checkout; nothing was charged. "
                    "Try again shortly.",
                )
            else:
                # A page, not a redirect: the CSP's form-action 'self' would block a form
                # submission redirected to Stripe; portal.js navigates on instead.
                return render(
                    request, "billing/topup_redirect.html", {"checkout_url": session.checkout_url}
                )
    else:
        form = TopUpForm(initial={"idempotency_key": uuid.uuid4().hex})
    context = {
        "form": form,
        "balance_usd": micros_to_usd(selectors.wallet_balance(user)),
        "cancelled": request.GET.get("cancelled") == "1",
    }
    return render(request, "billing/topup.html", context, status=400 if form.errors else 200)


def _credited(user: Any, session_id: str) -> Transaction | None:
    if not session_id:
        return None
    return Transaction.objects.filter(
        external_ref=f"stripe:checkout_session:{session_id}",
        entries__account__user=user,
    ).first()


@login_required
@require_GET
def topup_done(request: HttpRequest) -> HttpResponse:
    """Where Stripe sends the customer back; watches for the webhook's credit."""
    session_id = request.GET.get("session_id", "")[:255]
    context = {
        "session_id": session_id,
        "credited": _credited(request.user, session_id),
        "balance_usd": micros_to_usd(selectors.wallet_balance(request.user)),  # type: ignore[arg-type]
    }
    template = (
        "billing/_topup_status.html"
        if request.headers.get("X-Requested-With") == "fetch"
        else "billing/topup_done.html"
    )
    return render(request, template, context)


# --- Spend limits ------------------------------------------------------------------------------


class SpendLimitsForm(forms.Form):
    """The API's limits (SpendLimitsInput): blank means no limit."""

    monthly_cap_usd = forms.DecimalField(
        label="Monthly cap (USD)",
        required=False,
        min_value=Decimal("1"),
        max_digits=10,
        decimal_places=2,
        help_text="Usage charges per calendar month. At 80% you get a mail; at 100% new pods "
        "are refused and running ones stop. Blank: no cap.",
    )
    max_hourly_burn_usd = forms.DecimalField(
        label="Maximum hourly burn (USD/h)",
        required=False,
        min_value=Decimal("0.01"),
        max_digits=10,
        decimal_places=2,
        help_text="What all your running pods together may cost per hour. Blank: no limit.",
    )


@login_required
def spend_limits(request: HttpRequest) -> HttpResponse:
    user: Any = request.user
    summary = selectors.spend_limits_summary(user)
    if request.method == "POST":
        form = SpendLimitsForm(request.POST)
        if form.is_valid():
            cap = form.cleaned_data["monthly_cap_usd"]
            burn = form.cleaned_data["max_hourly_burn_usd"]
            spend_limits_set(
                user=user,
                monthly_cap=None if cap is None else usd_to_micros(cap),
                max_hourly_burn=None if burn is None else usd_to_micros(burn),
            )
            messages.success(request, "Spend limits saved.")
            return redirect("billing:limits")
    else:
        form = SpendLimitsForm(
            initial={
                "monthly_cap_usd": summary["monthly_cap_usd"],
                "max_hourly_burn_usd": summary["max_hourly_burn_usd"],
            }
        )
    context = {"form": form, "summary": summary}
    return render(request, "billing/limits.html", context, status=400 if form.errors else 200)


# --- Statements --------------------------------------------------------------------------------


class RangeForm(forms.Form):
    since = forms.DateField(required=False, label="From", widget=forms.DateInput({"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput({"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and until < since:
            self.add_error("until", "“To” is before “From”.")
        return data

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        """[since 00:00 UTC, day after until 00:00 UTC)."""
        since: date | None = self.cleaned_data.get("since")
        until: date | None = self.cleaned_data.get("until")
        return (
            datetime.combine(since, time.min, tzinfo=UTC) if since else None,
            datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC) if until else None,
        )


class TransactionFilterForm(RangeForm):
    kind = forms.ChoiceField(
        required=False, choices=[("", "All kinds"), *TransactionKind.choices], label="Kind"
    )


def csv_response(
    filename: str, header: list[str], rows: Iterable[list[Any]]
) -> StreamingHttpResponse:
    class Echo:
        def write(self, value: str) -> str:
            return value

    writer = csv.writer(Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def page_of(request: HttpRequest, items: Any) -> Any:
    return Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))


def query_without_page(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("format", None)
    return query.urlencode()


@login_required
@require_GET
def transactions(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    form = TransactionFilterForm(request.GET)
    if not form.is_valid():
        context = {"form": form, "page": None, "query": ""}
        return render(request, "billing/transactions.html", context, status=400)
    since, until = form.bounds()
    entries = selectors.wallet_statement(
        request.user,  # type: ignore[arg-type]
        kind=form.cleaned_data["kind"] or None,
        since=since,
        until=until,
    )
    if request.GET.get("format") == "csv":
        rows = (
            [
                e.transaction.created_at.isoformat(),
                e.transaction_id,
                e.transaction.kind,
                e.transaction.memo,
                micros_to_usd(e.amount, places=6),
                e.amount,
            ]
            for e in entries.iterator(chunk_size=1000)
        )
        header = ["time_utc", "transaction", "kind", "memo", "amount_usd", "amount_micros"]
        return csv_response("transactions.csv", header, rows)
    context = {
        "form": form,
        "page": page_of(request, entries),
        "query": query_without_page(request),
    }
    return render(request, "billing/transactions.html", context)
