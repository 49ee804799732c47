"""`/api/v1/pods/*`: one view per operation, every query scoped to the owner."""

from django.db.models import Q
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.errors import Conflict
from apps.core.idempotency import idempotent
from apps.pods import pod_templates, services, upstream, volumes
from apps.pods import serializers as s
from apps.pods.logs_wait import COMMAND_HEADER, WAITER_SCOPE_KEY, logs_wait_blocking
from apps.pods.models import Pod, PodTemplate, UsageRecord, Volume, VolumeStatus

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "Same key and body within 24 h → the first response again (status and body, with "
        "Idempotent-Replayed: true); same key, other body → 422; while the first request "
        "still runs → 409."
    ),
)


class PaymentRequired(exceptions.APIException):
    status_code = status.HTTP_402_PAYMENT_REQUIRED
    default_code = "payment_required"


def owned_pod(request: Request, pod_id: str) -> Pod:
    return get_object_or_404(Pod.objects.for_user(request.user).select_related("node"), pk=pod_id)


class PodListView(APIView):
    @extend_schema(responses={200: s.PodOutput(many=True)}, tags=["pods"])
    def get(self, request: Request) -> Response:
        pods = Pod.objects.for_user(request.user).select_related("node")
        status_filter = request.query_params.get("status")
        if status_filter:
            pods = pods.filter(status=status_filter.upper())
        return Response(s.PodOutput(pods[:500], many=True).data)

    @extend_schema(
        request=s.PodCreateInput,
        responses={201: s.PodOutput, 200: s.PodOutput},
        parameters=[IDEMPOTENCY_HEADER],
        tags=["pods"],
    )
    @idempotent("pods.create")
    def post(self, request: Request) -> Response:
        data = s.PodCreateInput(data=request.data, context={"user": request.user})
        data.is_valid(raise_exception=True)
        try:
            created = services.pod_create(
                owner=request.user,  # type: ignore[arg-type]
                spec=data.validated_data,
            )
        except volumes.VolumeInputError as exc:
            raise exceptions.ValidationError({exc.field: exc.message}) from exc
        except services.SpendRefusedError as exc:
            raise PaymentRequired(detail=str(exc)) from exc
        return Response(s.PodOutput(created.pod).data, status=status.HTTP_201_CREATED)


class PodDetailView(APIView):
    @extend_schema(responses={200: s.PodOutput}, tags=["pods"])
    def get(self, request: Request, pod_id: str) -> Response:
        return Response(s.PodOutput(owned_pod(request, pod_id)).data)

    @extend_schema(responses={200: s.PodOutput}, tags=["pods"])
    def delete(self, request: Request, pod_id: str) -> Response:
        pod = services.pod_terminate(pod=owned_pod(request, pod_id))
        return Response(s.PodOutput(pod).data)


class PodStopView(APIView):
    @extend_schema(request=None, responses={200: s.PodOutput}, tags=["pods"])
    def post(self, request: Request, pod_id: str) -> Response:
        pod = services.pod_stop(pod=owned_pod(request, pod_id))
        return Response(s.PodOutput(pod).data)


class PodEventsView(APIView):
    @extend_schema(responses={200: s.PodEventOutput(many=True)}, tags=["pods"])
    def get(self, request: Request, pod_id: str) -> Response:
        pod = owned_pod(request, pod_id)
        return Response(s.PodEventOutput(pod.events.all(), many=True).data)


class PodLogsView(APIView):
    """The pod's container log (`tail` lines). The agent is asked and answers on its next
    heartbeat; the wait for it runs in the event loop under ASGI (apps/pods/logs_wait.py)."""

    @extend_schema(
        parameters=[OpenApiParameter("tail", int, description="Lines (1–5000, default 200).")],
        responses={200: None},
        tags=["pods"],
    )
    def get(self, request: Request, pod_id: str) -> Response:
        pod = owned_pod(request, pod_id)
        try:
            tail = int(request.query_params.get("tail", "200"))
        except ValueError as exc:
            raise exceptions.ValidationError({"tail": "A whole number is required."}) from exc
        if not 1 <= tail <= 5000:
            raise exceptions.ValidationError({"tail": "Must be between 1 and 5000."})
        if upstream.runs_upstream(pod):
            # The pod is a container on an upstream cloud: its provider has the log, or says
            # why not (`unavailable`).
            got = upstream.pod_upstream_logs(pod=pod, tail=tail)
            return Response(
                {"pod_id": str(pod.pk), "logs": got.logs, "unavailable": got.unavailable or None}
            )
        command = services.pod_fetch_logs(pod=pod, tail=tail)
        if command is None:
            raise exceptions.ValidationError(
                {"non_field_errors": f"Pod is {pod.status}: it has no container to read."}
            )
        # The agent answers on its next heartbeat. Under ASGI the waiter in front of Django
        # waits for it in the event loop (apps/pods/logs_wait.py); otherwise wait here.
        if getattr(request._request, "scope", {}).get(WAITER_SCOPE_KEY):
            return Response(
                status=status.HTTP_202_ACCEPTED, headers={COMMAND_HEADER: str(command.pk)}
            )
        code, body = logs_wait_blocking(command.pk)
        return Response(body, status=code)


class UsageView(APIView):
    pagination_class = LimitOffsetPagination  # documented as paginated in the schema

    @extend_schema(responses={200: s.UsageOutput(many=True)}, tags=["billing"])
    def get(self, request: Request) -> Response:
        records = UsageRecord.objects.filter(owner=request.user.pk).order_by("-period_start")
        pod_id = request.query_params.get("pod")
        if pod_id:
            records = records.filter(pod_id=pod_id)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(records, request, view=self)
        return paginator.get_paginated_response(s.UsageOutput(page, many=True).data)


# --- volumes -----------------------------------------------------------------------------------


def owned_volume(request: Request, volume_id: str) -> Volume:
    return get_object_or_404(
        Volume.objects.for_user(request.user).select_related("node"), pk=volume_id
    )


class VolumeListView(APIView):
    @extend_schema(responses={200: s.VolumeOutput(many=True)}, tags=["volumes"])
    def get(self, request: Request) -> Response:
        found = (
            Volume.objects.for_user(request.user)
            .select_related("node")
            .prefetch_related("pods")
            .exclude(status=VolumeStatus.DELETED)
        )
        return Response(s.VolumeOutput(found[:500], many=True).data)

    @extend_schema(request=s.VolumeCreateInput, responses={201: s.VolumeOutput}, tags=["volumes"])
    def post(self, request: Request) -> Response:
        data = s.VolumeCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            volume = volumes.volume_create(
                owner=request.user,  # type: ignore[arg-type]
                **data.validated_data,
            )
        except volumes.VolumeInputError as exc:
            raise exceptions.ValidationError({exc.field: exc.message}) from exc
        return Response(s.VolumeOutput(volume).data, status=status.HTTP_201_CREATED)


class VolumeDetailView(APIView):
    @extend_schema(responses={200: s.VolumeOutput}, tags=["volumes"])
    def get(self, request: Request, volume_id: str) -> Response:
        return Response(s.VolumeOutput(owned_volume(request, volume_id)).data)

    @extend_schema(responses={200: s.VolumeOutput, 409: None}, tags=["volumes"])
    def delete(self, request: Request, volume_id: str) -> Response:
        try:
            volume = volumes.volume_delete(volume=owned_volume(request, volume_id))
        except volumes.VolumeInUseError as exc:
            raise Conflict(detail=str(exc), code="volume_in_use") from exc
        return Response(s.VolumeOutput(volume).data)


# --- stop / resume ----------------------------------------------------------------------------


class PodResumeView(APIView):
    @extend_schema(request=None, responses={200: s.PodOutput}, tags=["pods"])
    def post(self, request: Request, pod_id: str) -> Response:
        try:
            pod = services.pod_resume(pod=owned_pod(request, pod_id))
        except services.PodNotResumableError as exc:
            raise Conflict(detail=str(exc), code="not_resumable") from exc
        except services.SpendRefusedError as exc:
            raise PaymentRequired(detail=str(exc)) from exc
        return Response(s.PodOutput(pod).data)


# --- templates --------------------------------------------------------------------------------


class TemplateListView(APIView):
    @extend_schema(responses={200: s.PodTemplateOutput(many=True)}, tags=["templates"])
    def get(self, request: Request) -> Response:
        visible = PodTemplate.objects.filter(
            Q(owner__isnull=True, is_public=True) | Q(owner=request.user)
        )
        return Response(s.PodTemplateOutput(visible, many=True).data)

    @extend_schema(
        request=s.PodTemplateCreateInput, responses={201: s.PodTemplateOutput}, tags=["templates"]
    )
    def post(self, request: Request) -> Response:
        data = s.PodTemplateCreateInput(data=request.data, context={"user": request.user})
        data.is_valid(raise_exception=True)
        template = pod_templates.template_save(
            owner=request.user,  # type: ignore[arg-type]
            data=data.validated_data,
        )
        return Response(s.PodTemplateOutput(template).data, status=status.HTTP_201_CREATED)


class TemplateDetailView(APIView):
    @extend_schema(responses={200: s.PodTemplateOutput}, tags=["templates"])
    def get(self, request: Request, template_id: str) -> Response:
        visible = PodTemplate.objects.filter(
            Q(owner__isnull=True, is_public=True) | Q(owner=request.user)
        )
        return Response(s.PodTemplateOutput(get_object_or_404(visible, pk=template_id)).data)

    @extend_schema(responses={204: None}, tags=["templates"])
    def delete(self, request: Request, template_id: str) -> Response:
        template = get_object_or_404(
            PodTemplate.objects.filter(owner_id=request.user.pk), pk=template_id
        )
        template.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
