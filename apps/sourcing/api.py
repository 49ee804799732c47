"""`/api/v1/dashboard/*`: the upstream market as our users see it (offers at our prices,
availability, price comparison) and, for operators, provider health and the money of
sourcing."""

from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.sourcing import registry, selectors
from apps.sourcing.adapters import ADAPTERS
from apps.sourcing.selectors import SORTS


class OffersQuery(serializers.Serializer):
    gpu_model = serializers.CharField(required=False, max_length=64)
    provider = serializers.ChoiceField(choices=sorted(ADAPTERS), required=False)
    gpu_count = serializers.IntegerField(required=False, min_value=1, max_value=64)
    min_vram_gb = serializers.IntegerField(required=False, min_value=1, max_value=4096)
    max_price = serializers.IntegerField(required=False, min_value=0, help_text="µ$ per GPU-hour")
    region = serializers.CharField(required=False, max_length=64)
    spot = serializers.BooleanField(required=False, allow_null=True, default=None)
    sort = serializers.ChoiceField(choices=sorted(SORTS), required=False, default="price")


class OfferOutput(serializers.Serializer):
    provider = serializers.CharField()
    offer_id = serializers.CharField()
    gpu_model = serializers.CharField()
    gpu_count = serializers.IntegerField()
    vram_gb = serializers.IntegerField()
    price_per_gpu_hour = serializers.IntegerField(help_text="µ$: what a pod on it is charged")
    region = serializers.CharField()
    reliability = serializers.FloatField()
    spot = serializers.BooleanField()
    stale = serializers.BooleanField()
    fetched_at = serializers.DateTimeField()
    age_seconds = serializers.SerializerMethodField()

    def get_age_seconds(self, entry: Any) -> float:
        return round((timezone.now() - entry.fetched_at).total_seconds(), 1)


class StaffOfferOutput(OfferOutput):
    upstream_price_per_gpu_hour = serializers.IntegerField()
    markup_percent = serializers.IntegerField()


def _query(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    query = serializer_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    return dict(query.validated_data)


class OverviewView(APIView):
    @extend_schema(tags=["dashboard"], responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response(selectors.overview(staff=bool(request.user.is_staff)))


class GpuOffersView(APIView):
    """The offer book at our prices: filter, sort, paginate (limit/offset)."""

    pagination_class = LimitOffsetPagination  # documented as paginated in the schema

    @extend_schema(
        tags=["dashboard"], parameters=[OffersQuery], responses={200: StaffOfferOutput(many=True)}
    )
    def get(self, request: Request) -> Response:
        params = _query(OffersQuery, request)
        queryset = selectors.offers(**params)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, request, view=self)
        output = StaffOfferOutput if request.user.is_staff else OfferOutput
        return paginator.get_paginated_response(output(page, many=True).data)


class GpuAvailabilityView(APIView):
    @extend_schema(tags=["dashboard"], responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response({"results": selectors.availability()})


class PriceComparisonQuery(serializers.Serializer):
    gpu_model = serializers.CharField(required=False, max_length=64)


class PriceComparisonView(APIView):
    @extend_schema(
        tags=["dashboard"], parameters=[PriceComparisonQuery], responses={200: OpenApiTypes.OBJECT}
    )
    def get(self, request: Request) -> Response:
        params = _query(PriceComparisonQuery, request)
        return Response({"results": selectors.price_comparison(params.get("gpu_model"))})


class ProviderHealthView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(tags=["dashboard"], responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response({"results": selectors.provider_health()})


class ProviderResetView(APIView):
    """An operator unblocks a provider (after fixing its key or account)."""

    permission_classes = [IsAdminUser]

    @extend_schema(tags=["dashboard"], request=None, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request, provider: str) -> Response:
        if provider not in registry.configured_providers():
            raise exceptions.NotFound(f"No configured provider named {provider!r}.")
        registry.breaker_reset(provider)
        return Response(registry.breaker_for(provider).snapshot())
