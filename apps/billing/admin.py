"""Operators' view of the ledger: read-only accounts and transactions, plus one form each to
credit or refund a user's wallet through the services (recording the operator and reason)."""

import uuid
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from apps.accounts.admin import UserAdmin
from apps.accounts.models import User
from apps.billing.models import (
    AccountKind,
    Entry,
    LedgerAccount,
    ReconciliationMismatch,
    StripeReconciliation,
    Transaction,
)
from apps.billing.selectors import wallet_balance
from apps.billing.services import LedgerError, wallet_credit, wallet_refund
from apps.core.money import micros_to_usd, usd_to_micros

OPERATIONS = {
    "credit": ("Credit wallet", wallet_credit),
    "refund": ("Refund wallet", wallet_refund),
}


admin.site.unregister(User)


@admin.register(User)
class UserWalletAdmin(UserAdmin):
    """The accounts app's user admin plus the wallet: its balance and the credit and refund
    forms below."""

    readonly_fields = ("wallet",)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is None:  # the add form: no wallet yet
            return fieldsets
        return [*fieldsets[:2], ("Wallet", {"fields": ("wallet",)}), *fieldsets[2:]]

    @admin.display(description="Balance")
    def wallet(self, user: User) -> str:
        """The balance, with the credit and refund forms (billing's services post them)."""
        if user.pk is None:
            return "—"
        return format_html(
            '${} · <a href="{}">Credit…</a> · <a href="{}">Refund…</a>',
            micros_to_usd(wallet_balance(user)),
            reverse("admin:billing_wallet_credit", args=[user.pk]),
            reverse("admin:billing_wallet_refund", args=[user.pk]),
        )


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class EntryInline(ReadOnlyMixin, admin.TabularInline):
    model = Entry
    extra = 0
    can_delete = False
    fields = ("account", "amount", "amount_usd")
    readonly_fields = fields

    @admin.display(description="USD")
    def amount_usd(self, entry: Entry) -> str:
        return micros_to_usd(entry.amount, places=6)


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("__str__", "kind", "balance_usd", "created_at", "operations")
    list_filter = ("kind",)
    search_fields = ("user__email", "provider_id")
    list_select_related = ("user",)
    fields = ("kind", "user", "provider_id", "balance", "balance_usd", "created_at", "operations")
    readonly_fields = fields

    @admin.display(description="Balance (USD)", ordering="balance")
    def balance_usd(self, account: LedgerAccount) -> str:
        return micros_to_usd(account.balance, places=6)

    @admin.display(description="Operations")
    def operations(self, account: LedgerAccount) -> str:
        if account.kind != AccountKind.USER_WALLET or account.user_id is None:
            return "—"
        return format_html(
            '<a href="{}">Credit…</a> · <a href="{}">Refund…</a>',
            reverse("admin:billing_wallet_credit", args=[account.user_id]),
            reverse("admin:billing_wallet_refund", args=[account.user_id]),
        )

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "wallet/<uuid:user_id>/credit/",
                wrap(self.wallet_operation_view),
                {"operation": "credit"},
                name="billing_wallet_credit",
            ),
            path(
                "wallet/<uuid:user_id>/refund/",
                wrap(self.wallet_operation_view),
                {"operation": "refund"},
                name="billing_wallet_refund",
            ),
            *super().get_urls(),
        ]

    def wallet_operation_view(
        self, request: HttpRequest, user_id: uuid.UUID, operation: str
    ) -> HttpResponse:
        """Ask for an amount and a reason, then credit or refund through the service. The form
        carries a one-time idempotency key, so a double submit applies once."""
        if not request.user.has_perm("billing.operate_wallet"):
            raise PermissionDenied
        title, service = OPERATIONS[operation]
        user = get_object_or_404(User, pk=user_id)
        if request.method == "POST":
            form = WalletOperationForm(request.POST)
            if form.is_valid():
                try:
                    posted, created = service(
                        user=user,
                        amount=usd_to_micros(form.cleaned_data["amount_usd"]),
                        reason=form.cleaned_data["reason"],
                        operator=request.user,  # type: ignore[arg-type]
                        idempotency_key=form.cleaned_data["idempotency_key"],
                    )
                except LedgerError as exc:
                    form.add_error(None, str(exc))
                else:
                    verb = "Applied" if created else "Already applied"
                    self.message_user(
                        request,
                        f"{verb}: {posted.memo} (transaction {posted.pk}).",
                        messages.SUCCESS,
                    )
                    change_url = reverse("admin:billing_transaction_change", args=[posted.pk])
                    return HttpResponseRedirect(change_url)
        else:
            key = f"admin:{operation}:{user.pk}:{uuid.uuid4()}"
            form = WalletOperationForm(initial={"idempotency_key": key})
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{title}: {user.email}",
            "form": form,
            "target": user,
            "balance_usd": micros_to_usd(wallet_balance(user)),
            "operation": operation,
        }
        return TemplateResponse(request, "admin/billing/wallet_operation.html", context)


class WalletOperationForm(forms.Form):
    amount_usd = forms.DecimalField(
        label="Amount (USD)", min_value=Decimal("0.01"), max_digits=12, decimal_places=2
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=100)


@admin.register(Transaction)
class TransactionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("id", "created_at", "kind", "memo", "created_by", "idempotency_key")
    list_filter = ("kind",)
    search_fields = ("idempotency_key", "external_ref", "memo", "reason")
    list_select_related = ("created_by",)
    date_hierarchy = "created_at"
    fields = (
        "kind",
        "memo",
        "created_at",
        "created_by",
        "reason",
        "idempotency_key",
        "external_ref",
        "metadata",
    )
    readonly_fields = fields
    inlines = (EntryInline,)


class MismatchInline(ReadOnlyMixin, admin.TabularInline):
    model = ReconciliationMismatch
    extra = 0
    can_delete = False
    fields = ("kind", "stripe_id", "transaction", "stripe_amount", "ledger_amount", "detail")
    readonly_fields = fields


@admin.register(StripeReconciliation)
class StripeReconciliationAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The daily reports of the ledger against Stripe: what is missing on either side."""

    list_display = (
        "window_start",
        "window_end",
        "stripe_charges",
        "ledger_topups",
        "stripe_refunds",
        "ledger_refunds",
        "mismatch_count",
        "ran_at",
    )
    readonly_fields = (
        "window_start",
        "window_end",
        "ran_at",
        "stripe_charges",
        "stripe_refunds",
        "ledger_topups",
        "ledger_refunds",
    )
    inlines = (MismatchInline,)

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).annotate(mismatch_total=Count("mismatches"))

    @admin.display(description="Mismatches", ordering="mismatch_total")
    def mismatch_count(self, report: StripeReconciliation) -> int:
        return report.mismatch_total  # type: ignore[attr-defined]
