"""`/api/v1/models/*`: the catalog (public), deploying (owner), deployments, their keys and
metrics (owner; another user's deployment id answers 404)."""

from datetime import timedelta
from typing import Any

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.catalog import economics, selectors
from apps.catalog import serializers as s
from apps.catalog.models import Deployment, DeploymentKey, ModelTemplate
from apps.catalog.services import deploy, scaling
from apps.pods.services import SpendRefusedError
from apps.sourcing import selectors as sourcing_selectors

MAX_METRICS_WINDOW_S = 7 * 86400
MAX_ECONOMICS_WINDOW_S = 31 * 86400


class PaymentRequired(exceptions.APIException):
    status_code = status.HTTP_402_PAYMENT_REQUIRED
    default_code = "payment_required"


def owned_deployment(request: Request, deployment_id: str) -> Deployment:
    return get_object_or_404(selectors.deployments_for(request.user), pk=deployment_id)


class TemplateListView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        parameters=[s.TemplateFilterInput],
        responses={200: s.TemplateOutput(many=True)},
        tags=["models"],
    )
    def get(self, request: Request) -> Response:
        filters = s.TemplateFilterInput(data=request.query_params)
        filters.is_valid(raise_exception=True)
        templates = selectors.templates_search(**filters.validated_data)
        return Response(s.TemplateOutput(templates, many=True).data)


class TemplateDetailView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: s.TemplateOutput}, tags=["models"])
    def get(self, request: Request, slug: str) -> Response:
        template = get_object_or_404(ModelTemplate, slug=slug, is_active=True)
        return Response(s.TemplateOutput(template).data)


class DeployView(APIView):
    @extend_schema(request=s.DeployInput, responses={201: s.DeploymentOutput}, tags=["models"])
    def post(self, request: Request, slug: str) -> Response:
        template = get_object_or_404(ModelTemplate, slug=slug, is_active=True)
        data = s.DeployInput(data=request.data, context={"template": template})
        data.is_valid(raise_exception=True)
        values: dict[str, Any] = dict(data.validated_data)
        try:
            created = deploy.deployment_create(
                owner=request.user,  # type: ignore[arg-type]
                template=template,
                **values,
            )
        except SpendRefusedError as exc:
            raise PaymentRequired(detail=str(exc)) from exc
        deployment = selectors.deployments_for(request.user).get(pk=created.deployment.pk)
        body = s.DeploymentOutput(deployment).data
        body["api_key"] = created.key.raw  # shown once
        return Response(body, status=status.HTTP_201_CREATED)


class DeploymentListView(APIView):
    @extend_schema(responses={200: s.DeploymentOutput(many=True)}, tags=["deployments"])
    def get(self, request: Request) -> Response:
        deployments = selectors.deployments_for(request.user)
        wanted = request.query_params.get("status")
        if wanted:
            deployments = deployments.filter(status=wanted.upper())
        return Response(s.DeploymentOutput(deployments[:200], many=True).data)


class DeploymentDetailView(APIView):
    @extend_schema(responses={200: s.DeploymentOutput}, tags=["deployments"])
    def get(self, request: Request, deployment_id: str) -> Response:
        return Response(s.DeploymentOutput(owned_deployment(request, deployment_id)).data)

    @extend_schema(
        request=s.ScalingInput, responses={200: s.DeploymentOutput}, tags=["deployments"]
    )
    def patch(self, request: Request, deployment_id: str) -> Response:
        """Change the scaling settings; a 400 names the first bad field and changes nothing."""
        deployment = owned_deployment(request, deployment_id)
        data = s.ScalingInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            scaling.deployment_scaling_update(
                deployment_id=deployment.pk,
                changes=dict(data.validated_data),
                actor=f"its owner ({request.user})",
            )
        except scaling.ScalingSettingsError as exc:
            raise exceptions.ValidationError({exc.field: exc.message}) from exc
        except scaling.DeploymentNotLiveError as exc:
            raise exceptions.ValidationError({"non_field_errors": str(exc)}) from exc
        return Response(s.DeploymentOutput(owned_deployment(request, deployment_id)).data)

    @extend_schema(responses={200: s.DeploymentOutput}, tags=["deployments"])
    def delete(self, request: Request, deployment_id: str) -> Response:
        deployment = deploy.deployment_stop(deployment=owned_deployment(request, deployment_id))
        return Response(s.DeploymentOutput(owned_deployment(request, str(deployment.pk))).data)


class DeploymentEventsView(APIView):
    @extend_schema(responses={200: s.DeploymentEventOutput(many=True)}, tags=["deployments"])
    def get(self, request: Request, deployment_id: str) -> Response:
        deployment = owned_deployment(request, deployment_id)
        return Response(s.DeploymentEventOutput(deployment.events.all(), many=True).data)


class DeploymentKeyRotateView(APIView):
    @extend_schema(request=None, responses={201: s.KeyOutput}, tags=["deployments"])
    def post(self, request: Request, deployment_id: str) -> Response:
        deployment = owned_deployment(request, deployment_id)
        if not deploy.deployment_is_live(deployment):
            raise exceptions.ValidationError(
                {"non_field_errors": f"The deployment is {deployment.status}."}
            )
        issued = deploy.deployment_key_rotate(deployment=deployment)
        body = s.KeyOutput(issued.key).data
        body["api_key"] = issued.raw  # shown once
        return Response(body, status=status.HTTP_201_CREATED)


class DeploymentMetricsView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("window", int, description="Seconds back from now (default 3600).")
        ],
        responses={200: None},
        tags=["deployments"],
    )
    def get(self, request: Request, deployment_id: str) -> Response:
        deployment = owned_deployment(request, deployment_id)
        try:
            window = int(request.query_params.get("window", "3600"))
        except ValueError as exc:
            raise exceptions.ValidationError({"window": "A whole number is required."}) from exc
        if not 1 <= window <= MAX_METRICS_WINDOW_S:
            raise exceptions.ValidationError(
                {"window": f"Must be between 1 and {MAX_METRICS_WINDOW_S} seconds."}
            )
        return Response(selectors.deployment_metrics(deployment=deployment, window_s=window))


class DeploymentKeysView(APIView):
    """A deployment's keys (each with this month's tokens), and issuing another one."""

    @extend_schema(responses={200: s.KeyOutput(many=True)}, tags=["deployments"])
    def get(self, request: Request, deployment_id: str) -> Response:
        deployment = owned_deployment(request, deployment_id)
        return Response(selectors.deployment_keys(deployment=deployment))

    @extend_schema(request=s.KeyCreateInput, responses={201: s.KeyOutput}, tags=["deployments"])
    def post(self, request: Request, deployment_id: str) -> Response:
        deployment = owned_deployment(request, deployment_id)
        if not deploy.deployment_is_live(deployment):
            raise exceptions.ValidationError(
                {"non_field_errors": f"The deployment is {deployment.status}."}
            )
        data = s.KeyCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        issued = deploy.deployment_key_issue(deployment=deployment, **data.validated_data)
        body = s.KeyOutput(issued.key).data
        body["api_key"] = issued.raw  # shown once
        return Response(body, status=status.HTTP_201_CREATED)


class DeploymentKeyView(APIView):
    """One key: change its budget or rate limit, or revoke it."""

    def _key(self, request: Request, deployment_id: str, key_id: str) -> DeploymentKey:
        deployment = owned_deployment(request, deployment_id)
        return get_object_or_404(
            DeploymentKey, pk=key_id, deployment=deployment, revoked_at__isnull=True
        )

    @extend_schema(request=s.KeyUpdateInput, responses={200: s.KeyOutput}, tags=["deployments"])
    def patch(self, request: Request, deployment_id: str, key_id: str) -> Response:
        key = self._key(request, deployment_id, key_id)
        data = s.KeyUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(
            s.KeyOutput(deploy.deployment_key_update(key=key, **data.validated_data)).data
        )

    @extend_schema(responses={200: s.KeyOutput}, tags=["deployments"])
    def delete(self, request: Request, deployment_id: str, key_id: str) -> Response:
        key = self._key(request, deployment_id, key_id)
        return Response(s.KeyOutput(deploy.deployment_key_revoke(key=key)).data)


class DeploymentEconomicsView(APIView):
    """GPU cost per 1M input and output tokens and idle share over the last `window` seconds
    (rules in apps/catalog/economics.py); staff also see upstream cost and margin."""

    @extend_schema(
        parameters=[
            OpenApiParameter("window", int, description="Seconds back from now (default 86400).")
        ],
        responses={200: None},
        tags=["deployments"],
    )
    def get(self, request: Request, deployment_id: str) -> Response:
        deployment = owned_deployment(request, deployment_id)
        window = _window(request, default=86400)
        until = timezone.now()
        return Response(
            economics.deployment_economics(
                deployment=deployment,
                since=until - timedelta(seconds=window),
                until=until,
                operator=bool(request.user.is_staff),
            )
        )


def _window(request: Request, *, default: int) -> int:
    try:
        window = int(request.query_params.get("window", str(default)))
    except ValueError as exc:
        raise exceptions.ValidationError({"window": "A whole number is required."}) from exc
    if not 1 <= window <= MAX_ECONOMICS_WINDOW_S:
        raise exceptions.ValidationError(
            {"window": f"Must be between 1 and {MAX_ECONOMICS_WINDOW_S} seconds."}
        )
    return window


class CostQuery(serializers.Serializer):
    days = serializers.IntegerField(required=False, min_value=1, max_value=366, default=30)


class CostAnalyticsView(APIView):
    """Operators' cost analytics: sourcing's upstream spend, revenue and margin per provider
    and GPU model, plus each model deployment's GPU revenue, upstream cost, hosts' share and
    margin. It composes sourcing and the catalog, so it lives here, above sourcing."""

    permission_classes = [IsAdminUser]

    @extend_schema(tags=["dashboard"], parameters=[CostQuery], responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        query = CostQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        since = sourcing_selectors.default_since(query.validated_data["days"])
        body = sourcing_selectors.cost_analytics(since=since)
        body["by_deployment"] = economics.deployments_margins(since=since, until=timezone.now())
        return Response(body)
