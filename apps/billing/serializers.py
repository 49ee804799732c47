from decimal import Decimal

from rest_framework import serializers

from apps.billing.models import Entry, TransactionKind
from apps.core.money import micros_to_usd
from apps.core.serializers import StrictSerializer

DEPOSIT_MIN_USD = Decimal("5.00")
DEPOSIT_MAX_USD = Decimal("10000.00")


class DepositInput(StrictSerializer):
    amount_usd = serializers.DecimalField(
        max_digits=7,
        decimal_places=2,
        min_value=DEPOSIT_MIN_USD,
        max_value=DEPOSIT_MAX_USD,
        help_text='US dollars with at most two decimals, as a string: "25.00". From $5 to $10,000.',
        error_messages={
            "min_value": "The smallest deposit is $5.00.",
            "max_value": "The largest deposit is $10,000.00.",
            "max_decimal_places": "Use at most 2 decimal places (whole cents).",
        },
    )


class DepositOutput(serializers.Serializer):
    checkout_url = serializers.URLField(help_text="Stripe's hosted payment page; send the user.")
    session_id = serializers.CharField(help_text="The Stripe Checkout Session id (cs_…).")


class BalanceOutput(serializers.Serializer):
    balance_micros = serializers.IntegerField(help_text="Micro-dollars (1 USD = 1,000,000).")
    balance_usd = serializers.CharField(help_text='Rounded to the cent: "12.34".')
    currency = serializers.CharField(default="USD")


class MeOutput(serializers.Serializer):
    id = serializers.UUIDField()
    email = serializers.EmailField()
    name = serializers.CharField()
    balance_micros = serializers.IntegerField(help_text="Micro-dollars (1 USD = 1,000,000).")
    balance_usd = serializers.CharField(help_text='Rounded to the cent: "12.34".')


class TransactionListQuery(serializers.Serializer):
    kind = serializers.ChoiceField(choices=TransactionKind.choices, required=False)


class WalletTransactionOutput(serializers.Serializer):
    """One movement on the user's wallet: the transaction, and what it did to this wallet."""

    id = serializers.IntegerField(source="transaction_id", help_text="The transaction's id.")
    kind = serializers.ChoiceField(choices=TransactionKind.choices, source="transaction.kind")
    memo = serializers.CharField(source="transaction.memo")
    amount_micros = serializers.IntegerField(
        source="amount", help_text="Signed micro-dollars: positive added to the balance."
    )
    amount_usd = serializers.SerializerMethodField(help_text='Signed, to the cent: "-1.25".')
    effect = serializers.SerializerMethodField(help_text="credit (added) or debit (taken).")
    created_at = serializers.DateTimeField(source="transaction.created_at")

    def get_amount_usd(self, entry: Entry) -> str:
        return micros_to_usd(entry.amount)

    def get_effect(self, entry: Entry) -> str:
        return "credit" if entry.amount > 0 else "debit"


class SpendLimitsInput(StrictSerializer):
    monthly_cap_usd = serializers.DecimalField(
        max_digits=10, decimal_places=2, min_value=Decimal("1"), allow_null=True
    )
    max_hourly_burn_usd = serializers.DecimalField(
        max_digits=10, decimal_places=2, min_value=Decimal("0.01"), allow_null=True
    )


class SpendLimitsOutput(serializers.Serializer):
    monthly_cap_usd = serializers.CharField(allow_null=True)
    max_hourly_burn_usd = serializers.CharField(allow_null=True)
    month_spent_usd = serializers.CharField()
    warning_at_percent = serializers.IntegerField()
