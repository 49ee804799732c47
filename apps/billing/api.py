"""`/api/v1/users/*`: who am I with my balance, my balance, my wallet's transactions, and
deposits (Stripe Checkout)."""

import logging
from typing import Any

import stripe
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.billing import selectors
from apps.billing import serializers as s
from apps.billing.models import Entry
from apps.billing.services import (
    StripeNotConfiguredError,
    checkout_session_create,
    spend_limits_set,
)
from apps.core.money import micros_to_usd, usd_to_micros

logger = logging.getLogger(__name__)

IDEMPOTENCY_KEY_MAX = 200


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "not_configured"


class PaymentProviderError(exceptions.APIException):
    status_code = status.HTTP_502_BAD_GATEWAY
    default_code = "payment_provider_error"


class IdempotencyKeyReused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"


def _balance_body(user: Any) -> dict[str, Any]:
    micros = selectors.wallet_balance(user)
    return {"balance_micros": micros, "balance_usd": micros_to_usd(micros)}


class MeView(APIView):
    @extend_schema(responses={200: s.MeOutput}, tags=["billing"])
    def get(self, request: Request) -> Response:
        user = request.user
        body = {"id": user.pk, "email": user.email, "name": user.name, **_balance_body(user)}  # type: ignore[union-attr]
        return Response(s.MeOutput(body).data)


class BalanceView(APIView):
    @extend_schema(responses={200: s.BalanceOutput}, tags=["billing"])
    def get(self, request: Request) -> Response:
        return Response(s.BalanceOutput({**_balance_body(request.user), "currency": "USD"}).data)


class TransactionListView(generics.ListAPIView):
    serializer_class = s.WalletTransactionOutput

    def get_queryset(self) -> QuerySet[Entry]:
        query = s.TransactionListQuery(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.wallet_entries(
            self.request.user,  # type: ignore[arg-type]
            kind=query.validated_data.get("kind"),
        )

    @extend_schema(parameters=[s.TransactionListQuery], tags=["billing"])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class DepositView(APIView):
    @extend_schema(
        request=s.DepositInput,
        responses={201: s.DepositOutput},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Retry with the same key to get the same Checkout Session.",
            )
        ],
        tags=["billing"],
    )
    def post(self, request: Request) -> Response:
        data = s.DepositInput(data=request.data)
        data.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= IDEMPOTENCY_KEY_MAX and key.isprintable()):
            raise exceptions.ValidationError(
                {"Idempotency-Key": f"Use 1 to {IDEMPOTENCY_KEY_MAX} printable characters."}
            )
        try:
            session = checkout_session_create(
                user=request.user,  # type: ignore[arg-type]
                amount_micros=usd_to_micros(data.validated_data["amount_usd"]),
                # Scoped to the caller, so one user's key can never return another's session.
                idempotency_key=f"deposit:{request.user.pk}:{key}" if key else None,
            )
        except StripeNotConfiguredError as exc:
            raise ServiceUnavailable(str(exc)) from exc
        except stripe.IdempotencyError as exc:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used for a different deposit; use a new key."
            ) from exc
        except stripe.StripeError as exc:
            logger.exception("stripe: creating a checkout session failed")
            raise PaymentProviderError(
                "The payment provider could not start the checkout; nothing was charged. "
                "Try again shortly."
            ) from exc
        body = {"checkout_url": session.checkout_url, "session_id": session.session_id}
        return Response(s.DepositOutput(body).data, status=status.HTTP_201_CREATED)


def _limits_body(user: Any) -> dict[str, Any]:
    return selectors.spend_limits_summary(user)


class SpendLimitsView(APIView):
    """Your monthly spend cap and maximum hourly burn (null: none)."""

    @extend_schema(responses={200: s.SpendLimitsOutput}, tags=["billing"])
    def get(self, request: Request) -> Response:
        return Response(_limits_body(request.user))

    @extend_schema(
        request=s.SpendLimitsInput, responses={200: s.SpendLimitsOutput}, tags=["billing"]
    )
    def put(self, request: Request) -> Response:
        data = s.SpendLimitsInput(data=request.data)
        data.is_valid(raise_exception=True)
        cap = data.validated_data["monthly_cap_usd"]
        burn = data.validated_data["max_hourly_burn_usd"]
        spend_limits_set(
            user=request.user,  # type: ignore[arg-type]  # IsAuthenticated: never anonymous
            monthly_cap=None if cap is None else usd_to_micros(cap),
            max_hourly_burn=None if burn is None else usd_to_micros(burn),
        )
        return Response(_limits_body(request.user))
