"""`/api/v1/nodes/*`: the agent protocol (docs/agent-protocol.md), the operator's node list,
the users' view of free GPUs, and the installer."""

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.module_loading import import_string
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import metrics
from apps.core.errors import error_body
from apps.core.middleware import client_ip
from apps.nodes import selectors, services
from apps.nodes import serializers as s
from apps.nodes.agent_dist import (
    LOCK_FILENAME,
    agent_requirements_lock,
    agent_requirements_lock_sha256,
    agent_wheel,
    agent_wheel_sha256,
    wheel_filename,
)
from apps.nodes.authentication import IsAgent, NodeTokenAuthentication, log_refusal
from apps.nodes.heartbeat_replay import HeartbeatRefusedError, heartbeat_claim_sequence
from apps.nodes.models import Node
from apps.nodes.registration import credential_prefix, registration_grant


class AgentView(APIView):
    authentication_classes = [NodeTokenAuthentication]
    permission_classes = [IsAgent]

    @property
    def node(self) -> Node:
        node = self.request.auth
        if not isinstance(node, Node):  # IsAgent has already refused anything else
            raise exceptions.NotAuthenticated()
        return node


class RegisterView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request: Request) -> str:
        return 'Token realm="nodes"'

    @extend_schema(
        request=s.NodeRegisterInput, responses={201: s.NodeRegisterOutput}, tags=["agent"]
    )
    def post(self, request: Request) -> Response:
        data = s.NodeRegisterInput(data=request.data)
        data.is_valid(raise_exception=True)
        raw_token = data.validated_data["registration_token"]
        grant = registration_grant(raw_token)
        if grant is None:
            log_refusal(
                request,
                node=None,
                credential=credential_prefix(raw_token),
                reason="invalid registration token",
            )
            raise exceptions.AuthenticationFailed(
                "Invalid registration token: use a provider key (pk_…) or the bootstrap token."
            )
        try:
            registered = services.node_register(
                grant=grant, data=data.validated_data, source_ip=client_ip(request)
            )
        except services.RegistrationTokenSpentError as exc:
            log_refusal(request, node=None, credential=grant.credential_prefix, reason=str(exc))
            raise exceptions.AuthenticationFailed(str(exc)) from exc
        return Response(
            {
                "node_id": str(registered.node.pk),
                "node_token": registered.raw_token,
                "heartbeat_interval": registered.node.heartbeat_interval,
            },
            status=status.HTTP_201_CREATED,
        )


class HeartbeatView(AgentView):
    @extend_schema(request=s.HeartbeatInput, responses={200: s.HeartbeatOutput}, tags=["agent"])
    def post(self, request: Request) -> Response:
        data = s.HeartbeatInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        seq, sent_at = fields.pop("seq", None), fields.pop("sent_at", None)
        try:
            heartbeat_claim_sequence(node=self.node, seq=seq, sent_at=sent_at, now=timezone.now())
        except HeartbeatRefusedError as exc:
            log_refusal(request, node=self.node.pk, credential="", reason=exc.reason)
            body = error_body(status_code=exc.status, code=exc.code, message=exc.reason)
            if exc.last_seq is not None:
                body["error"]["last_seq"] = exc.last_seq
            return Response(body, status=exc.status)
        answer = services.node_heartbeat(node=self.node, **fields)
        metrics.HEARTBEATS.inc()
        return Response(
            {
                "heartbeat_interval": answer.heartbeat_interval,
                "commands": [
                    {"id": str(c.pk), "type": c.type, "payload": c.payload} for c in answer.commands
                ],
                "wanted_pod_ids": [str(pod_id) for pod_id in answer.wanted_pod_ids],
            }
        )


class AckView(AgentView):
    @extend_schema(request=s.CommandAckInput, responses={200: s.CommandAckOutput}, tags=["agent"])
    def post(self, request: Request, command_id: str) -> Response:
        data = s.CommandAckInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            command = services.command_ack(
                node=self.node,
                command_id=command_id,  # type: ignore[arg-type]
                succeeded=data.validated_data["status"] == "succeeded",
                result=data.validated_data["result"],
                error=data.validated_data["error"],
            )
        except services.CommandNotFoundError as exc:
            raise exceptions.NotFound("No such command for this node.") from exc
        return Response({"id": str(command.pk), "status": command.status})


class NodeListView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses={200: s.NodeOutput(many=True)}, tags=["nodes"])
    def get(self, request: Request) -> Response:
        return Response(s.NodeOutput(selectors.node_list(), many=True).data)


class AvailableView(APIView):
    @extend_schema(responses={200: s.AvailableGpuOutput(many=True)}, tags=["nodes"])
    def get(self, request: Request) -> Response:
        # NODES_AVAILABLE_SELECTOR: this app's own list, or the pods app's one price list
        # (own nodes and upstream offers together).
        rows = import_string(settings.NODES_AVAILABLE_SELECTOR)()
        return Response(s.AvailableGpuOutput(rows, many=True).data)


def _server_url(request: HttpRequest) -> str:
    url = settings.SITE_URL or request.build_absolute_uri("/")
    return url.rstrip("/")


def install_script(request: HttpRequest) -> HttpResponse:
    script = render_to_string(
        "nodes/install.sh",
        {
            "server": _server_url(request),
            "wheel": wheel_filename(),
            "wheel_sha256": agent_wheel_sha256(),
            "lock": LOCK_FILENAME,
            "lock_sha256": agent_requirements_lock_sha256(),
        },
    )
    return HttpResponse(script, content_type="text/x-shellscript; charset=utf-8")


def agent_wheel_download(request: HttpRequest, filename: str) -> HttpResponse:
    """The agent wheel, its SHA-256 (`<wheel>.sha256`, sha256sum's format) and the hashed
    lock of its dependencies."""
    wheel = wheel_filename()
    if filename == f"{wheel}.sha256":
        return HttpResponse(
            f"{agent_wheel_sha256()}  {wheel}\n", content_type="text/plain; charset=utf-8"
        )
    if filename == LOCK_FILENAME:
        return HttpResponse(agent_requirements_lock(), content_type="text/plain; charset=utf-8")
    if filename != wheel:
        return HttpResponse(status=404)
    response = HttpResponse(agent_wheel(), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
