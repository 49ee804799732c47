"""The double-entry ledger (DESIGN.md §3): accounts, transactions and their entries.

Amounts are signed integers of micro-dollars. A positive balance on a wallet or a payable is
money we hold for that user or provider; clearing and platform accounts carry the other side,
so the balances of all accounts together always sum to zero. Rows are written only through
`apps.billing.services.ledger_post_many` (`ledger_post` is its one-posting form). The ledger
is append-only: the database refuses UPDATE and DELETE on transactions and entries (migration
0005), so a mistake is fixed by a correcting transaction.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now


class AccountKind(models.TextChoices):
    USER_WALLET = "USER_WALLET", "User wallet"
    PROVIDER_PAYABLE = "PROVIDER_PAYABLE", "Provider payable"
    PLATFORM_REVENUE = "PLATFORM_REVENUE", "Platform revenue"
    UPSTREAM_COST = "UPSTREAM_COST", "Upstream cost"
    STRIPE_CLEARING = "STRIPE_CLEARING", "Stripe clearing"
    PAYOUTS_CLEARING = "PAYOUTS_CLEARING", "Payouts clearing"
    # Money that left the platform to providers (PayPal, on-chain): the cash side of payouts.
    PAYOUTS_SENT = "PAYOUTS_SENT", "Payouts sent"


# Kinds with exactly one account for the whole platform.
PLATFORM_KINDS = (
    AccountKind.PLATFORM_REVENUE,
    AccountKind.UPSTREAM_COST,
    AccountKind.STRIPE_CLEARING,
    AccountKind.PAYOUTS_CLEARING,
    AccountKind.PAYOUTS_SENT,
)


class LedgerAccount(models.Model):
    """One account of the ledger: a user's wallet (`user` set), a provider's payable
    (`provider_id` set; the providers app turns it into its foreign key) or one of the
    platform's own accounts (neither set). `balance` caches the sum of the account's entries.
    The database derives it: inserting entries adds them to their accounts' balances in the
    same statement (a trigger, migration 0005), the application never writes it, and on
    Postgres any other UPDATE of it is refused. `ledger_check` proves it hourly."""

    kind = models.CharField(max_length=32, choices=AccountKind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,  # money history outlives nothing it belongs to
        related_name="ledger_accounts",
    )
    provider_id = models.UUIDField(null=True, blank=True)
    balance = models.BigIntegerField(db_default=0, help_text="Micro-dollars (cached).")
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ("kind", "id")
        permissions = [("operate_wallet", "Can credit or refund a user's wallet")]
        constraints = [
            models.UniqueConstraint(
                fields=["user"],
                condition=Q(kind=AccountKind.USER_WALLET),
                name="billing_one_wallet_per_user",
            ),
            models.UniqueConstraint(
                fields=["provider_id"],
                condition=Q(kind=AccountKind.PROVIDER_PAYABLE),
                name="billing_one_payable_per_provider",
            ),
            models.UniqueConstraint(
                fields=["kind"],
                condition=Q(kind__in=PLATFORM_KINDS),
                name="billing_one_account_per_platform_kind",
            ),
            models.CheckConstraint(
                condition=(
                    Q(kind=AccountKind.USER_WALLET, user__isnull=False, provider_id__isnull=True)
                    | Q(
                        kind=AccountKind.PROVIDER_PAYABLE,
                        user__isnull=True,
                        provider_id__isnull=False,
                    )
                    | Q(kind__in=PLATFORM_KINDS, user__isnull=True, provider_id__isnull=True)
                ),
                name="billing_account_owner_matches_kind",
            ),
        ]

    def __str__(self) -> str:
        if self.kind == AccountKind.USER_WALLET:
            return f"wallet of {self.user}"
        if self.kind == AccountKind.PROVIDER_PAYABLE:
            return f"payable to provider {self.provider_id}"
        return self.get_kind_display()


class TransactionKind(models.TextChoices):
    TOPUP = "TOPUP", "Top-up"
    USAGE = "USAGE", "Usage"
    CREDIT = "CREDIT", "Credit"
    REFUND = "REFUND", "Refund"
    PAYOUT = "PAYOUT", "Payout"
    ADJUSTMENT = "ADJUSTMENT", "Adjustment"


class Transaction(models.Model):
    """One atomic movement of money: two or more entries that sum to zero. `idempotency_key`
    is the caller's name for the movement (`stripe:event:evt_…`, `usage:<pod>:<interval>`), so
    a retry finds the first posting instead of making a second. `external_ref`, when set, names
    the outside object the movement settles (`stripe:checkout_session:cs_…`) so that two
    different keys cannot settle it twice. Operator credits and refunds record the operator in
    `created_by` and why in `reason`."""

    kind = models.CharField(max_length=16, choices=TransactionKind.choices)
    memo = models.CharField(max_length=255, db_default="", blank=True)
    idempotency_key = models.CharField(max_length=255, unique=True)
    external_ref = models.CharField(max_length=255, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(db_default=Now(), db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The operator, for credits, refunds and adjustments.",
    )
    reason = models.TextField(db_default="", blank=True)
    metadata = models.JSONField(
        default=dict, db_default=models.Value({}, models.JSONField()), blank=True
    )

    class Meta:
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} {self.memo}".strip()


class Entry(models.Model):
    """One leg of a transaction: a signed amount (never zero) on one account. The entries of a
    transaction sum to zero: checked in code by `ledger_post_many` on every database and, on
    Postgres, again by a trigger after each INSERT statement (migration 0007). Never updated
    or deleted (migration 0005)."""

    transaction = models.ForeignKey(Transaction, on_delete=models.PROTECT, related_name="entries")
    # No index of its own: the (account, id DESC) index below serves every lookup by account,
    # and one index fewer is one write fewer per entry (metering writes ~25,000 a tick).
    account = models.ForeignKey(
        LedgerAccount, on_delete=models.PROTECT, related_name="entries", db_index=False
    )
    amount = models.BigIntegerField(help_text="Micro-dollars; positive adds to the account.")

    class Meta:
        verbose_name_plural = "entries"
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="billing_entry_amount_not_zero"),
        ]
        indexes = [
            # An account's statement, newest first (the users' transaction list).
            models.Index(fields=["account", "-id"], name="billing_entry_account_id"),
        ]

    def __str__(self) -> str:
        return f"{self.amount:+d} on account {self.account_id}"


class SpendLimit(models.Model):
    """A user's own spend controls: a monthly cap on usage charges (warning at 80%; at 100%
    new work is refused and running pods are stopped) and a maximum hourly burn rate across
    running pods. Enforced by the metering tick, the same path that charges."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="spend_limit",
    )
    monthly_cap = models.BigIntegerField(null=True, blank=True, help_text="Micro-dollars.")
    max_hourly_burn = models.BigIntegerField(null=True, blank=True, help_text="Micro-dollars.")
    warned_month = models.CharField(max_length=7, blank=True, help_text="YYYY-MM of the 80% mail.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"spend limits of {self.user_id}"


class StripeReconciliation(models.Model):
    """One comparison of the ledger with Stripe over [window_start, window_end): Stripe's
    successful charges and refunds against the ledger's Stripe top-ups and refunds. What is
    missing on either side, or differs, is a `ReconciliationMismatch` (admin and error log).
    Run daily over the previous UTC day; a rerun of a window replaces its report."""

    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    ran_at = models.DateTimeField(auto_now=True)
    stripe_charges = models.PositiveIntegerField(default=0)
    stripe_refunds = models.PositiveIntegerField(default=0)
    ledger_topups = models.PositiveIntegerField(default=0)
    ledger_refunds = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("-window_start",)
        constraints = [
            models.UniqueConstraint(
                fields=["window_start", "window_end"], name="billing_one_report_per_window"
            )
        ]

    def __str__(self) -> str:
        return f"Stripe reconciliation {self.window_start:%Y-%m-%d %H:%M} – {self.window_end:%H:%M}"


class MismatchKind(models.TextChoices):
    CHARGE_NOT_IN_LEDGER = "CHARGE_NOT_IN_LEDGER", "Stripe charge with no ledger top-up"
    TOPUP_NOT_IN_STRIPE = "TOPUP_NOT_IN_STRIPE", "Ledger top-up with no Stripe charge"
    AMOUNT_DIFFERS = "AMOUNT_DIFFERS", "Top-up amount differs from the Stripe charge"
    REFUND_NOT_IN_LEDGER = "REFUND_NOT_IN_LEDGER", "Stripe refund with no ledger refund"
    REFUND_NOT_IN_STRIPE = "REFUND_NOT_IN_STRIPE", "Ledger refund with no Stripe refund"


class ReconciliationMismatch(models.Model):
    """One thing the reconciliation found on one side only (or with different amounts):
    `stripe_id` names the Stripe object (charge, payment intent or refund), `transaction` the
    ledger's; amounts are micro-dollars."""

    reconciliation = models.ForeignKey(
        StripeReconciliation, on_delete=models.CASCADE, related_name="mismatches"
    )
    kind = models.CharField(max_length=32, choices=MismatchKind.choices)
    stripe_id = models.CharField(max_length=255, blank=True)
    transaction = models.ForeignKey(
        Transaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    stripe_amount = models.BigIntegerField(null=True, blank=True)
    ledger_amount = models.BigIntegerField(null=True, blank=True)
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ("reconciliation", "kind", "id")

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.stripe_id or self.transaction_id}"
