"""Catalog pages of the customer portal: model cards by category with a deploy dialog, the
deployments list, and a deployment's page (key shown once, status with progress while it
loads, metrics charts, an `openai` snippet, and a streaming chat playground). Views parse, call
the catalog's services and selectors, and render."""

import uuid
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db.models import Count, Sum
from django.db.models.functions import TruncMinute
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.catalog import economics, selectors
from apps.catalog.models import (
    DEPLOYMENT_FINAL,
    Capability,
    Deployment,
    DeploymentStatus,
    ModelCategory,
    ModelTemplate,
    ModelUsageLog,
)
from apps.catalog.services import deploy, scaling
from apps.core.gpu_models import CPU_MODEL
from apps.nodes.models import Gpu, NodeStatus
from apps.pods.services import SpendRefusedError

MAX_REPLICAS = 8
# Steps of the progress bar towards READY.
PROGRESS = {
    DeploymentStatus.PENDING: 1,
    DeploymentStatus.PROVISIONING: 2,
    DeploymentStatus.LOADING: 3,
    DeploymentStatus.READY: 4,
    DeploymentStatus.DEGRADED: 4,
}
PROGRESS_STEPS = 4
COMING_UP = (DeploymentStatus.PENDING, DeploymentStatus.PROVISIONING, DeploymentStatus.LOADING)
STATUS_POLL_MS = 1500
METRICS_WINDOW = timedelta(hours=1)
METRICS_BUCKET_MIN = 5
ECONOMICS_WINDOW = timedelta(hours=24)
DEPLOY_NONCE_TTL_S = 24 * 3600
CATEGORY_LABELS: dict[str, str] = {
    ModelCategory.LLM: "Language models",
    ModelCategory.IMAGE: "Images",
    ModelCategory.AUDIO_STT: "Speech to text",
    ModelCategory.AUDIO_TTS: "Text to speech",
    ModelCategory.EMBEDDING: "Embeddings",
    ModelCategory.CODE: "Code",
    ModelCategory.MULTIMODAL: "Multimodal",
}


def gpu_choices(template: ModelTemplate) -> list[tuple[str, str]]:
    """GPU models a deployment of `template` may ask for: the recommended one first, then the
    models on online nodes with enough memory (CPU templates run on CPU only)."""
    if template.gpu_count == 0:
        return [(CPU_MODEL, "CPU (no GPU)")]
    wanted_mb = template.min_vram_gb * 1024
    seen = (
        Gpu.objects.filter(node__status=NodeStatus.ONLINE, memory_total_mb__gte=wanted_mb)
        .values_list("model", flat=True)
        .distinct()
    )
    models = [template.recommended_gpu] + sorted(set(seen) - {template.recommended_gpu})
    return [(m, m) for m in models]


class DeployForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="Defaults to the model's id.")
    gpu_model = forms.ChoiceField(label="GPU")
    replicas = forms.IntegerField(min_value=1, max_value=MAX_REPLICAS, initial=1)
    # One deployment per rendered form: a resubmitted page (reload, double click) finds the
    # deployment the first submit made instead of deploying again.
    nonce = forms.CharField(widget=forms.HiddenInput, max_length=64, required=False)

    def __init__(self, *args: Any, template: ModelTemplate, **kwargs: Any) -> None:
        # Each card has its own form: ids unique per template.
        kwargs.setdefault("auto_id", f"deploy-{template.slug}-%s")
        super().__init__(*args, **kwargs)
        self.template = template
        self.fields["nonce"].initial = uuid.uuid4().hex
        choices = gpu_choices(template)
        gpu_field: Any = self.fields["gpu_model"]
        gpu_field.choices = choices
        gpu_field.initial = choices[0][0]


def catalog(request: HttpRequest) -> HttpResponse:
    """Every active template as a card, grouped by category (in the categories' order)."""
    templates = selectors.templates_search(category=request.GET.get("category") or None)
    by_category: dict[str, list[dict[str, Any]]] = {}
    for template in templates:
        by_category.setdefault(template.category, []).append(
            {"template": template, "form": DeployForm(template=template)}
        )
    labels = {value: CATEGORY_LABELS.get(value, label) for value, label in ModelCategory.choices}
    groups = [
        {"key": key, "label": labels[key], "cards": by_category[key]}
        for key in ModelCategory.values
        if key in by_category
    ]
    return render(
        request,
        "catalog/catalog.html",
        {
            "groups": groups,
            "categories": list(labels.items()),
            "category": request.GET.get("category", ""),
        },
    )


@login_required
def model_deploy(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: the deploy form alone (the dialog's page without JavaScript). POST: deploy, and
    show the deployment's page with its key this once."""
    template = get_object_or_404(ModelTemplate, slug=slug, is_active=True)
    form = DeployForm(request.POST or None, template=template)
    error = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        nonce_key = f"catalog:deploy-form:{request.user.pk}:{data['nonce']}"
        if data["nonce"] and not cache.add(nonce_key, "", timeout=DEPLOY_NONCE_TTL_S):
            earlier = cache.get(nonce_key)
            messages.info(request, "This form was already submitted: no second deployment.")
            if earlier:
                return redirect("catalog:deployment", deployment_id=earlier)
            return redirect("catalog:deployments")
        try:
            created = deploy.deployment_create(
                owner=request.user,  # type: ignore[arg-type]
                template=template,
                name=data["name"],
                gpu_model=data["gpu_model"] if template.gpu_count else "",
                replicas=data["replicas"],
            )
        except SpendRefusedError as exc:
            cache.delete(nonce_key)  # after a top-up, the same form may deploy
            error = str(exc)
        else:
            if data["nonce"]:
                cache.set(nonce_key, str(created.deployment.pk), timeout=DEPLOY_NONCE_TTL_S)
            deployment = selectors.deployments_for(request.user).get(pk=created.deployment.pk)
            context = _detail_context(deployment)
            context["created_key"] = created.key.raw
            return render(request, "catalog/deployment.html", context, status=201)
    status = 402 if error else (400 if form.errors else 200)
    return render(
        request,
        "catalog/deploy.html",
        {"template": template, "form": form, "error": error},
        status=status,
    )


@login_required
def deployment_list(request: HttpRequest) -> HttpResponse:
    deployments = selectors.deployments_for(request.user)
    if request.GET.get("scope") != "all":
        deployments = deployments.exclude(status__in=DEPLOYMENT_FINAL)
    return render(
        request,
        "catalog/deployments.html",
        {"deployments": deployments[:200], "scope": request.GET.get("scope") or "live"},
    )


def _owned(request: HttpRequest, deployment_id: uuid.UUID) -> Deployment:
    return get_object_or_404(selectors.deployments_for(request.user), pk=deployment_id)


def traffic_series(deployment: Deployment, *, now: datetime) -> dict[str, list[dict[str, str]]]:
    """Requests and completion tokens per 5 minutes over the last hour, in portal.js's chart
    form (oldest first, empty buckets filled)."""
    start = now - METRICS_WINDOW
    rows = (
        ModelUsageLog.objects.filter(deployment=deployment, at__gte=start)
        .annotate(minute=TruncMinute("at"))
        .values("minute")
        .annotate(requests=Count("id"), tokens=Sum("completion_tokens"))
    )
    buckets = int(METRICS_WINDOW.total_seconds() // 60 // METRICS_BUCKET_MIN)
    requests = [0] * buckets
    tokens = [0] * buckets
    for row in rows:
        index = int((row["minute"] - start).total_seconds() // 60 // METRICS_BUCKET_MIN)
        index = min(max(index, 0), buckets - 1)
        requests[index] += row["requests"]
        tokens[index] += row["tokens"] or 0
    points: dict[str, list[dict[str, str]]] = {"requests": [], "tokens": []}
    for i in range(buckets):
        at = start + timedelta(minutes=i * METRICS_BUCKET_MIN)
        label = f"{at:%H:%M} UTC"
        points["requests"].append(
            {"label": label, "short": f"{at:%H:%M}", "value": str(requests[i])}
        )
        points["tokens"].append({"label": label, "short": f"{at:%H:%M}", "value": str(tokens[i])})
    return points


class ScalingForm(forms.Form):
    """The deployment page's scaling settings (the same bounds as the API's PATCH)."""

    min_replicas = forms.IntegerField(min_value=0, max_value=scaling.MAX_REPLICAS)
    max_replicas = forms.IntegerField(min_value=1, max_value=scaling.MAX_REPLICAS)
    target_concurrency = forms.IntegerField(
        min_value=1, max_value=scaling.MAX_TARGET_CONCURRENCY, label="Target concurrency"
    )
    scale_down_delay_s = forms.IntegerField(
        min_value=0, max_value=scaling.MAX_SCALE_DOWN_DELAY_S, label="Scale-down delay (s)"
    )
    max_queue = forms.IntegerField(min_value=0, max_value=scaling.MAX_QUEUE, label="Max queue")
    queue_timeout_s = forms.IntegerField(
        min_value=1, max_value=scaling.MAX_QUEUE_TIMEOUT_S, label="Queue timeout (s)"
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        low, high = data.get("min_replicas"), data.get("max_replicas")
        if low is not None and high is not None and low > high:
            self.add_error("min_replicas", "Must not exceed the maximum.")
        return data


def _scaling_initial(deployment: Deployment) -> dict[str, int]:
    return {name: getattr(deployment, name) for name in scaling.SCALING_FIELDS}


def _detail_context(
    deployment: Deployment, scaling_form: ScalingForm | None = None
) -> dict[str, Any]:
    replicas = list(deployment.replica_set.all())
    return {
        "deployment": deployment,
        "replicas": replicas,
        "keys": list(deployment.keys.all()),
        "events": list(deployment.events.order_by("-at", "-id")[:20]),
        "progress": PROGRESS.get(deployment.status),  # type: ignore[call-overload]
        "progress_steps": PROGRESS_STEPS,
        "coming_up": deployment.status in COMING_UP,
        "poll_ms": STATUS_POLL_MS if deployment.status in COMING_UP else None,
        "live": deploy.deployment_is_live(deployment),
        "can_chat": Capability.CHAT in deployment.capabilities,
        "metrics": selectors.deployment_metrics(
            deployment=deployment, window_s=int(METRICS_WINDOW.total_seconds())
        ),
        "series": traffic_series(deployment, now=timezone.now()),
        "scaling_form": scaling_form or ScalingForm(initial=_scaling_initial(deployment)),
        "cold_starts": selectors.cold_starts(deployment=deployment),
        "economics": economics.deployment_economics(
            deployment=deployment, since=timezone.now() - ECONOMICS_WINDOW, until=timezone.now()
        ),
    }


@login_required
def deployment_detail(request: HttpRequest, deployment_id: uuid.UUID) -> HttpResponse:
    deployment = _owned(request, deployment_id)
    context = _detail_context(deployment)
    if request.headers.get("X-Requested-With") == "fetch":
        return render(request, "catalog/_deployment_status.html", context)
    return render(request, "catalog/deployment.html", context)


@login_required
@require_POST
def deployment_stop(request: HttpRequest, deployment_id: uuid.UUID) -> HttpResponse:
    deployment = _owned(request, deployment_id)
    deploy.deployment_stop(deployment=deployment)
    messages.success(request, f"Stopped {deployment.name}: its key no longer works.")
    return redirect("catalog:deployment", deployment_id=deployment.pk)


@login_required
@require_POST
def deployment_rotate_key(request: HttpRequest, deployment_id: uuid.UUID) -> HttpResponse:
    deployment = _owned(request, deployment_id)
    if not deploy.deployment_is_live(deployment):
        messages.error(request, f"The deployment is {deployment.status}: no new key.")
        return redirect("catalog:deployment", deployment_id=deployment.pk)
    issued = deploy.deployment_key_rotate(deployment=deployment)
    context = _detail_context(_owned(request, deployment_id))
    context["created_key"] = issued.raw
    return render(request, "catalog/deployment.html", context)


@login_required
@require_POST
def deployment_scaling(request: HttpRequest, deployment_id: uuid.UUID) -> HttpResponse:
    """Change the scaling settings from the deployment's page."""
    deployment = _owned(request, deployment_id)
    form = ScalingForm(request.POST)
    if form.is_valid():
        try:
            scaling.deployment_scaling_update(
                deployment_id=deployment.pk,
                changes=dict(form.cleaned_data),
                actor=f"its owner ({request.user})",
            )
        except scaling.ScalingSettingsError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        except scaling.DeploymentNotLiveError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Scaling settings saved.")
            return redirect("catalog:deployment", deployment_id=deployment.pk)
    context = _detail_context(_owned(request, deployment_id), scaling_form=form)
    return render(request, "catalog/deployment.html", context, status=400)
