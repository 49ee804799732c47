"""Operators' view of providers: tier and verification (through `provider_set_tier`, which
keeps the fee history), price bands, and payouts — an approval queue and the history, with
actions that call the payout services (approve, reject, send now, check settlement) and a form
to enter a crypto transfer's hash or to fail a payout."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.admin import ReadOnlyInline
from apps.core.money import micros_to_usd
from apps.providers import services
from apps.providers.lifecycle import IllegalPayoutTransitionError
from apps.providers.models import (
    GpuPriceBand,
    Payout,
    PayoutApproval,
    PayoutEvent,
    PayoutStatus,
    Provider,
    ProviderFee,
    ProviderKey,
)


class ProviderFeeInline(ReadOnlyInline):
    model = ProviderFee
    fields = ("tier", "fee_percent", "effective_from", "set_by")
    readonly_fields = fields


class ProviderKeyInline(ReadOnlyInline):
    model = ProviderKey
    fields = ("name", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ("display_name", "owner", "tier", "verification", "payout_method", "created_at")
    list_filter = ("tier", "verification", "payout_method")
    search_fields = ("display_name", "owner__email", "id")
    list_select_related = ("owner",)
    fields = (
        "id",
        "owner",
        "display_name",
        "tier",
        "verification",
        "payout_method",
        "payout_details",
        "created_at",
    )
    readonly_fields = ("id", "owner", "payout_method", "payout_details", "created_at")
    inlines = (ProviderFeeInline, ProviderKeyInline)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # providers register themselves through the API

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Provider, form: Any, change: bool) -> None:
        tier = form.cleaned_data["tier"]
        verification = form.cleaned_data["verification"]
        services.provider_update(
            provider=obj, fields={"display_name": form.cleaned_data["display_name"]}
        )
        services.provider_set_tier(
            provider=obj,
            tier=tier,
            verification=verification,
            operator=request.user,  # type: ignore[arg-type]
        )


@admin.register(GpuPriceBand)
class GpuPriceBandAdmin(admin.ModelAdmin):
    list_display = ("gpu_model", "floor", "ceiling")


class PayoutEventInline(ReadOnlyInline):
    model = PayoutEvent
    fields = ("at", "from_status", "to_status", "reason", "actor")
    readonly_fields = fields


class PayoutForm(forms.ModelForm):
    tx_hash_entry = forms.CharField(
        required=False,
        label="Transaction hash",
        help_text="Crypto: the hash of the transfer you signed; marks the payout paid.",
    )
    fail_reason = forms.CharField(
        required=False,
        label="Fail or reject with reason",
        help_text="Rejects a requested payout, or fails a sent one; the money returns.",
    )

    class Meta:
        model = Payout
        fields: tuple[str, ...] = ()


@admin.register(Payout)
class PayoutAdmin(admin.ModelAdmin):
    form = PayoutForm
    list_display = ("id", "provider", "amount_usd", "method", "status", "created_at", "finished_at")
    list_filter = ("status", "method")
    search_fields = ("id", "provider__display_name", "provider__owner__email", "gateway_ref")
    list_select_related = ("provider",)
    readonly_fields = (
        "provider",
        "amount_usd",
        "method",
        "details",
        "status",
        "status_reason",
        "gateway",
        "gateway_ref",
        "transfer",
        "tx_hash",
        "attempts",
        "created_at",
        "approved_by",
        "approved_at",
        "sent_at",
        "finished_at",
    )
    fields = (*readonly_fields, "tx_hash_entry", "fail_reason")
    inlines = (PayoutEventInline,)
    actions: tuple[str, ...] = ("approve", "send_now", "check_settlement")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="USD")
    def amount_usd(self, payout: Payout) -> str:
        return micros_to_usd(payout.amount)

    def save_model(self, request: HttpRequest, obj: Payout, form: Any, change: bool) -> None:
        operator = request.user
        tx_hash = form.cleaned_data.get("tx_hash_entry", "").strip()
        reason = form.cleaned_data.get("fail_reason", "").strip()
        try:
            if tx_hash:
                services.payout_mark_paid(payout=obj, reference=tx_hash, operator=operator)  # type: ignore[arg-type]
                self.message_user(request, "Marked paid.")
            elif reason and obj.status == PayoutStatus.REQUESTED:
                services.payout_reject(payout=obj, operator=operator, reason=reason)  # type: ignore[arg-type]
                self.message_user(
                    request, "Rejected; the money is available to the provider again."
                )
            elif reason:
                services.payout_fail(payout=obj, operator=operator, reason=reason)  # type: ignore[arg-type]
                self.message_user(request, "Failed; the money is available to the provider again.")
        except (services.PayoutError, IllegalPayoutTransitionError) as exc:
            self.message_user(request, str(exc), level=messages.ERROR)

    @admin.action(description="Approve selected payouts")
    def approve(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        done = 0
        for payout in queryset.filter(status=PayoutStatus.REQUESTED):
            services.payout_approve(payout=payout, operator=request.user)  # type: ignore[arg-type]
            done += 1
        self.message_user(request, f"Approved {done} payout(s); they are sent shortly.")

    @admin.action(description="Send approved payouts now")
    def send_now(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        for payout in queryset.filter(status=PayoutStatus.APPROVED):
            sent = services.payout_send(payout_id=payout.pk, force=True)
            self.message_user(request, f"{sent.pk}: {sent.status} ({sent.status_reason})")

    @admin.action(description="Check settlement with the gateway")
    def check_settlement(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        for payout in queryset.filter(status=PayoutStatus.SENT):
            settled = services.payout_settle(payout_id=payout.pk)
            self.message_user(request, f"{settled.pk}: {settled.status}")


@admin.register(PayoutApproval)
class PayoutApprovalAdmin(PayoutAdmin):
    actions = ("approve",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Payout]:
        return super().get_queryset(request).filter(status=PayoutStatus.REQUESTED)
