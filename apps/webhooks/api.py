"""`/api/v1/webhooks/*`: register endpoints, list them, delete them, read their delivery log."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.webhooks import serializers as s
from apps.webhooks.selectors import deliveries_of, endpoints_of
from apps.webhooks.services import EndpointInputError, endpoint_create, endpoint_disable


class EndpointListView(APIView):
    @extend_schema(responses={200: s.EndpointOutput(many=True)}, tags=["webhooks"])
    def get(self, request: Request) -> Response:
        return Response(s.EndpointOutput(endpoints_of(request.user), many=True).data)

    @extend_schema(
        request=s.EndpointInput, responses={201: s.EndpointCreatedOutput}, tags=["webhooks"]
    )
    def post(self, request: Request) -> Response:
        data = s.EndpointInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            created = endpoint_create(user=request.user, **data.validated_data)
        except EndpointInputError as exc:
            raise exceptions.ValidationError({exc.field: str(exc)}) from exc
        body = {**s.EndpointOutput(created.endpoint).data, "secret": created.secret}
        return Response(body, status=status.HTTP_201_CREATED)


class EndpointDetailView(APIView):
    @extend_schema(responses={200: s.EndpointOutput}, tags=["webhooks"])
    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint = get_object_or_404(endpoints_of(request.user), pk=endpoint_id)
        return Response(s.EndpointOutput(endpoint).data)

    @extend_schema(responses={204: None}, tags=["webhooks"])
    def delete(self, request: Request, endpoint_id: str) -> Response:
        endpoint = get_object_or_404(endpoints_of(request.user), pk=endpoint_id)
        endpoint_disable(endpoint=endpoint)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeliveryListView(APIView):
    @extend_schema(responses={200: s.DeliveryOutput(many=True)}, tags=["webhooks"])
    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint = get_object_or_404(endpoints_of(request.user), pk=endpoint_id)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(deliveries_of(endpoint), request, view=self)
        return paginator.get_paginated_response(s.DeliveryOutput(page, many=True).data)
