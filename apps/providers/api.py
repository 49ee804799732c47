"""`/api/v1/providers/*`: the provider's own profile, keys, nodes, pricing, dashboard and
payouts. Every query is scoped to the caller's provider profile (another provider's object is
a 404 by construction); a user without a profile gets 403 everywhere but `register`."""

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.errors import Conflict
from apps.nodes.models import Node
from apps.providers import selectors, services
from apps.providers import serializers as s
from apps.providers.models import Payout, Provider, ProviderKey


class IsProvider(BasePermission):
    message = "This needs a provider profile: POST /api/v1/providers/register first."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        provider = Provider.objects.filter(owner=user).first()
        request.provider = provider  # type: ignore[attr-defined]
        return provider is not None


class ProviderView(APIView):
    permission_classes = [IsAuthenticated, IsProvider]

    @property
    def provider(self) -> Provider:
        return self.request.provider  # type: ignore[attr-defined]


def _bad_request(exc: services.PayoutError) -> exceptions.ValidationError:
    return exceptions.ValidationError({exc.field or "non_field_errors": str(exc)})


class RegisterView(APIView):
    @extend_schema(request=s.ProviderRegisterInput, responses={201: dict}, tags=["providers"])
    def post(self, request: Request) -> Response:
        data = s.ProviderRegisterInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            registered = services.provider_register(
                owner=request.user,  # type: ignore[arg-type]
                display_name=data.validated_data["display_name"],
                payout_method=data.validated_data.get("payout_method", ""),
                payout_details=data.validated_data.get("payout_details"),
            )
        except services.AlreadyProviderError as exc:
            raise Conflict(
                detail="You already have a provider profile.", code="already_provider"
            ) from exc
        key = registered.key
        return Response(
            {
                "provider": s.ProviderOutput(registered.provider).data,
                "key": {**s.ProviderKeyOutput(key.key).data, "key": key.raw},
            },
            status=status.HTTP_201_CREATED,
        )


class MeView(ProviderView):
    @extend_schema(responses={200: s.ProviderOutput}, tags=["providers"])
    def get(self, request: Request) -> Response:
        return Response(s.ProviderOutput(self.provider).data)

    @extend_schema(
        request=s.ProviderUpdateInput, responses={200: s.ProviderOutput}, tags=["providers"]
    )
    def patch(self, request: Request) -> Response:
        data = s.ProviderUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        provider = services.provider_update(provider=self.provider, fields=data.validated_data)
        return Response(s.ProviderOutput(provider).data)


class KeyListView(ProviderView):
    @extend_schema(responses={200: s.ProviderKeyOutput(many=True)}, tags=["providers"])
    def get(self, request: Request) -> Response:
        keys = ProviderKey.objects.filter(provider=self.provider)
        return Response(s.ProviderKeyOutput(keys, many=True).data)

    @extend_schema(
        request=s.ProviderKeyInput, responses={201: s.IssuedKeyOutput}, tags=["providers"]
    )
    def post(self, request: Request) -> Response:
        data = s.ProviderKeyInput(data=request.data)
        data.is_valid(raise_exception=True)
        issued = services.provider_key_create(
            provider=self.provider, name=data.validated_data["name"]
        )
        return Response(
            {**s.ProviderKeyOutput(issued.key).data, "key": issued.raw},
            status=status.HTTP_201_CREATED,
        )


class KeyDetailView(ProviderView):
    @extend_schema(responses={200: s.ProviderKeyOutput}, tags=["providers"])
    def delete(self, request: Request, key_id: int) -> Response:
        key = get_object_or_404(ProviderKey, provider=self.provider, pk=key_id)
        return Response(s.ProviderKeyOutput(services.provider_key_revoke(key=key)).data)


class NodeListView(ProviderView):
    @extend_schema(responses={200: s.ProviderNodeOutput(many=True)}, tags=["providers"])
    def get(self, request: Request) -> Response:
        nodes = selectors.provider_nodes(self.provider)
        return Response(s.ProviderNodeOutput(nodes, many=True).data)


class NodePricingView(ProviderView):
    @extend_schema(
        request=s.PricingInput, responses={200: s.ProviderNodeOutput}, tags=["providers"]
    )
    def patch(self, request: Request, node_id: str) -> Response:
        node = get_object_or_404(Node, provider_id=self.provider.pk, pk=node_id)
        data = s.PricingInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            services.node_pricing_set(
                node=node, price_per_gpu_hour=data.validated_data["price_per_gpu_hour"]
            )
        except services.PriceOutOfBandError as exc:
            raise exceptions.ValidationError({"price_per_gpu_hour": str(exc)}) from exc
        return Response(
            s.ProviderNodeOutput(selectors.provider_nodes(self.provider).get(pk=node.pk)).data
        )


class DashboardView(ProviderView):
    @extend_schema(responses={200: s.DashboardOutput}, tags=["providers"])
    def get(self, request: Request) -> Response:
        return Response(selectors.provider_dashboard(self.provider))


IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Same key and body → the same payout; same key, other body → 409.",
)


class PayoutRequestView(ProviderView):
    @extend_schema(
        request=s.PayoutRequestInput,
        responses={201: s.PayoutOutput, 200: s.PayoutOutput},
        parameters=[IDEMPOTENCY_HEADER],
        tags=["providers"],
    )
    def post(self, request: Request) -> Response:
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > 255:
            raise exceptions.ValidationError({"Idempotency-Key": "At most 255 characters."})
        data = s.PayoutRequestInput(data=request.data, context={"provider": self.provider})
        data.is_valid(raise_exception=True)
        try:
            requested = services.payout_request(
                provider=self.provider,
                amount=data.validated_data["amount"],
                method=data.validated_data["method"],
                details=data.validated_data["details"],
                idempotency_key=key,
            )
        except services.IdempotencyConflictError as exc:
            raise Conflict(detail=str(exc), code="idempotency_conflict") from exc
        except services.PayoutError as exc:
            raise _bad_request(exc) from exc
        code = status.HTTP_201_CREATED if requested.created else status.HTTP_200_OK
        return Response(s.PayoutOutput(requested.payout).data, status=code)


class PayoutListView(ProviderView):
    @extend_schema(responses={200: s.PayoutOutput(many=True)}, tags=["providers"])
    def get(self, request: Request) -> Response:
        payouts = Payout.objects.for_provider(self.provider)
        return Response(s.PayoutOutput(payouts[:500], many=True).data)


class PayoutDetailView(ProviderView):
    @extend_schema(responses={200: s.PayoutOutput}, tags=["providers"])
    def get(self, request: Request, payout_id: str) -> Response:
        payout = get_object_or_404(Payout.objects.for_provider(self.provider), pk=payout_id)
        return Response(s.PayoutOutput(payout).data)
