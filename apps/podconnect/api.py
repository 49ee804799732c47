"""`/api/v1/pods/{id}/access-tokens`: the port proxy's tokens of one pod (owner only; another
user's pod is a 404)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.podconnect import serializers as s
from apps.podconnect import services
from apps.podconnect.models import PodAccessToken
from apps.pods.models import Pod


def _owned(request: Request, pod_id: str) -> Pod:
    return get_object_or_404(Pod.objects.for_user(request.user), pk=pod_id)


class TokenListView(APIView):
    @extend_schema(responses={200: s.PodAccessTokenOutput(many=True)}, tags=["pods"])
    def get(self, request: Request, pod_id: str) -> Response:
        pod = _owned(request, pod_id)
        tokens = PodAccessToken.objects.filter(pod=pod)[:500]
        return Response(s.PodAccessTokenOutput(tokens, many=True).data)

    @extend_schema(
        request=s.TokenCreateInput, responses={201: s.PodAccessTokenCreatedOutput}, tags=["pods"]
    )
    def post(self, request: Request, pod_id: str) -> Response:
        pod = _owned(request, pod_id)
        data = s.TokenCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        issued = services.pod_token_create(
            user=request.user,  # type: ignore[arg-type]
            pod_id=pod.pk,
            name=data.validated_data["name"],
        )
        body = {**s.PodAccessTokenOutput(issued.token).data, "token": issued.raw}
        return Response(body, status=status.HTTP_201_CREATED)


class TokenRevokeView(APIView):
    @extend_schema(request=None, responses={200: s.PodAccessTokenOutput}, tags=["pods"])
    def delete(self, request: Request, pod_id: str, token_id: int) -> Response:
        pod = _owned(request, pod_id)
        try:
            token = services.pod_token_revoke(
                user=request.user,  # type: ignore[arg-type]
                pod_id=pod.pk,
                token_id=token_id,
            )
        except services.PodNotFoundError as exc:
            raise exceptions.NotFound("No such token for this pod.") from exc
        return Response(s.PodAccessTokenOutput(token).data)
