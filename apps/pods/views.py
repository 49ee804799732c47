"""Portal pages for pods: list with live status, the create form with the live price, the
detail page (status, events, connection info, logs), stop. Views parse, call a service or
selector, and render; every query is scoped to the signed-in owner (another user's pod is a
404). The fragments (`*_fragment`) are what portal.js polls."""

import shlex
import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from apps.core.gpu_models import CPU_MODEL
from apps.nodes.models import NodeCommand
from apps.pods import selectors, services, upstream, volumes
from apps.pods.models import Pod, PodStatus, PodTemplate, Volume, VolumeStatus
from apps.pods.serializers import MAX_GPUS, PodCreateInput

LOG_TAIL = 200


def _owned(request: HttpRequest, pod_id: uuid.UUID) -> Pod:
    return get_object_or_404(
        Pod.objects.for_user(request.user).select_related("node", "volume"), pk=pod_id
    )


def _table_context(request: HttpRequest, scope: str) -> dict[str, Any]:
    pods = selectors.user_pods(request.user, active_only=scope == "active")[:200]
    return {"pods": list(pods), "scope": scope}


@login_required
@require_GET
def pod_list(request: HttpRequest) -> HttpResponse:
    scope = "active" if request.GET.get("scope") == "active" else "all"
    return render(request, "pods/list.html", _table_context(request, scope))


@login_required
@require_GET
def pod_table_fragment(request: HttpRequest) -> HttpResponse:
    scope = "active" if request.GET.get("scope") == "active" else "all"
    return render(request, "pods/_table.html", _table_context(request, scope))


@require_GET
def gpu_prices(request: HttpRequest) -> HttpResponse:
    """The public price list (/gpus): our nodes and upstream offers together, our price with
    the markup included, availability, the kind of provider and its measured reliability.
    Anonymous visitors read it from the cache like the landing page's list."""
    offers = cache.get_or_set(
        "portal:gpu-prices", lambda: [o.as_dict() for o in selectors.pod_offers()], 15
    )
    return render(request, "pods/gpus.html", {"offers": offers or []})


@login_required
@require_GET
def offers_json(request: HttpRequest) -> JsonResponse:
    """What the create form's price preview reads every few seconds."""
    return JsonResponse({"offers": [o.as_dict() for o in selectors.pod_offers()]})


class PodForm(forms.Form):
    """The page's fields; the rules themselves are the API's (PodCreateInput), applied below."""

    name = forms.CharField(max_length=100)
    template = forms.ChoiceField(
        required=False,
        help_text="Start from a template: its image, command, ports and env are the defaults; "
        "what you fill in below wins.",
    )
    image = forms.CharField(
        max_length=255,
        required=False,
        help_text="A Docker image the node can run (optional with a template).",
    )
    command = forms.CharField(
        max_length=4096,
        required=False,
        help_text="Optional, shell-style: sleep 3600",
    )
    env = forms.CharField(
        label="Environment",
        required=False,
        max_length=65536,
        widget=forms.Textarea({"rows": 3}),
        help_text="One NAME=value per line.",
    )
    ports = forms.CharField(
        label="Ports",
        required=False,
        max_length=200,
        help_text="Container ports to expose, e.g. 8888, 22",
    )
    gpu_model = forms.ChoiceField(label="GPU model")
    gpu_count = forms.IntegerField(label="GPUs", min_value=0, max_value=MAX_GPUS, initial=1)
    price_cap_per_gpu_hour_usd = forms.DecimalField(
        label="Price cap ($ per GPU-hour)",
        required=False,
        min_value=0,
        max_digits=8,
        decimal_places=6,
        help_text="Optional: never place the pod above this price.",
    )
    cloud = forms.ChoiceField(
        label="Where",
        required=False,
        choices=[
            ("any", "Anywhere (our nodes or an upstream cloud)"),
            ("own", "Our nodes only"),
            ("upstream", "Upstream clouds only"),
        ],
        initial="any",
    )
    strategy = forms.ChoiceField(
        label="Choose by",
        required=False,
        choices=[
            ("BALANCED", "Balanced: price against measured reliability"),
            ("LOWEST_PRICE", "Lowest price"),
            ("BEST_VALUE", "Best value (price per GB of VRAM)"),
            ("HIGHEST_RELIABILITY", "Highest reliability"),
        ],
        initial="BALANCED",
    )
    interruptible = forms.BooleanField(
        label="Spot (interruptible)",
        required=False,
        help_text="Cheaper; the cloud may take it back. Billing stops at the interruption.",
    )
    bid_cap_per_gpu_hour_usd = forms.DecimalField(
        label="Spot bid cap ($ per GPU-hour)",
        required=False,
        min_value=0,
        max_digits=8,
        decimal_places=6,
    )
    restart = forms.ChoiceField(
        label="After an interruption",
        required=False,
        choices=[("never", "Stay interrupted"), ("on-interruption", "Place it again")],
        initial="never",
    )
    vcpus = forms.DecimalField(
        label="vCPUs",
        required=False,
        min_value=0,
        max_digits=7,
        decimal_places=3,
        help_text="Optional: more than the GPUs' share of the node, if it has them free.",
    )
    memory_mb = forms.IntegerField(
        label="Memory (MB)", required=False, min_value=0, help_text="Optional, like vCPUs."
    )
    volume = forms.ChoiceField(required=False, help_text="One of your volumes to mount.")
    volume_mount_path = forms.CharField(
        label="Mount path",
        required=False,
        max_length=255,
        help_text="Where the volume mounts (default /workspace).",
    )
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=64)

    field_order = (
        "template",
        "name",
        "image",
        "gpu_model",
        "gpu_count",
        "price_cap_per_gpu_hour_usd",
        "cloud",
        "strategy",
        "command",
        "ports",
        "env",
        "interruptible",
        "bid_cap_per_gpu_hour_usd",
        "restart",
    )

    def __init__(
        self,
        *args: Any,
        models: list[str],
        templates: list[tuple[str, str]] = (),  # type: ignore[assignment]
        volumes: list[tuple[str, str]] = (),  # type: ignore[assignment]
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        choices = {"gpu_model": [(m, m) for m in models]}
        choices["template"] = [("", "— none —"), *templates]
        choices["volume"] = [("", "— none —"), *volumes]
        for name, options in choices.items():
            field = self.fields[name]
            assert isinstance(field, forms.ChoiceField)  # noqa: S101 - declared above
            field.choices = options

    def clean_command(self) -> list[str] | None:
        raw = self.cleaned_data["command"].strip()
        if not raw:
            return None
        try:
            return shlex.split(raw)
        except ValueError as exc:
            raise forms.ValidationError(f"Cannot split this command: {exc}.") from exc

    def clean_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for number, line in enumerate(self.cleaned_data["env"].splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, value = line.partition("=")
            if not sep:
                raise forms.ValidationError(f"Line {number} has no “=”: write NAME=value.")
            env[name.strip()] = value
        return env

    def clean_ports(self) -> list[dict[str, Any]]:
        ports = []
        for item in self.cleaned_data["ports"].replace(",", " ").split():
            number, _, protocol = item.partition("/")
            if not number.isdigit():
                raise forms.ValidationError(f"“{item}” is not a port number.")
            ports.append({"container_port": int(number), "protocol": protocol or "tcp"})
        return ports


def _apply_api_rules(form: PodForm, user: Any) -> dict[str, Any] | None:
    """Validate the form's values with the API's serializer, so the page and the API accept
    exactly the same pods; its errors land on the form's fields. Fields left empty are left
    out (with a template, its values fill them)."""
    data = {
        k: v
        for k, v in form.cleaned_data.items()
        if k != "idempotency_key" and v not in (None, "", [], {})
    }
    serializer = PodCreateInput(data=data, context={"user": user})
    if serializer.is_valid():
        return dict(serializer.validated_data)
    for field, errors in serializer.errors.items():
        target = field if field in form.fields else None
        for error in _messages(errors):
            form.add_error(target, error)
    return None


def _messages(detail: Any) -> list[str]:
    """DRF's error detail (nested for ports) as plain sentences."""
    if isinstance(detail, dict):
        return [f"{k}: {m}" for k, v in detail.items() for m in _messages(v)]
    if isinstance(detail, list):
        return [m for item in detail for m in _messages(item)]
    return [str(detail)]


def _form_choices(request: HttpRequest) -> dict[str, list[tuple[str, str]]]:
    templates = PodTemplate.objects.filter(
        Q(owner__isnull=True, is_public=True) | Q(owner_id=request.user.pk)
    )
    usable = Volume.objects.for_user(request.user).filter(
        status__in=(VolumeStatus.CREATING, VolumeStatus.READY)
    )
    return {
        "templates": [(t.slug, t.name) for t in templates],
        "volumes": [
            (str(v.pk), f"{v.name} ({v.size_gb} GB on {v.node.hostname})")
            for v in usable.select_related("node")
        ],
    }


@login_required
def pod_create(request: HttpRequest) -> HttpResponse:
    offers = selectors.pod_offers()
    models = selectors.gpu_model_choices(offers)
    if request.method == "POST":
        form = PodForm(request.POST, models=models, **_form_choices(request))
        if form.is_valid() and (spec := _apply_api_rules(form, request.user)) is not None:
            try:
                created = services.pod_create(
                    owner=request.user,  # type: ignore[arg-type]
                    spec=spec,
                    idempotency_key=f"portal:{form.cleaned_data['idempotency_key']}",
                )
            except services.SpendRefusedError as exc:
                form.add_error(None, str(exc))
            except volumes.VolumeInputError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            except services.IdempotencyConflictError:
                form.add_error(None, "This form was already submitted with other values.")
            else:
                messages.success(request, f"Pod {created.pod.name} created.")
                return redirect("pods:detail", pod_id=created.pod.pk)
    else:
        first = offers[0].gpu_model if offers else CPU_MODEL
        form = PodForm(
            models=models,
            **_form_choices(request),
            initial={
                "idempotency_key": uuid.uuid4().hex,
                "gpu_model": first,
                "gpu_count": 0 if first == CPU_MODEL else 1,
            },
        )
    context = {"form": form, "offers": [o.as_dict() for o in offers]}
    return render(request, "pods/create.html", context, status=400 if form.errors else 200)


def _detail_context(pod: Pod) -> dict[str, Any]:
    return {
        "pod": pod,
        "events": list(pod.events.all()),
        "workload": selectors.pod_workload(pod),
        "gpus": selectors.pod_gpus(pod),
    }


@login_required
@require_GET
def pod_detail(request: HttpRequest, pod_id: uuid.UUID) -> HttpResponse:
    pod = _owned(request, pod_id)
    return render(request, "pods/detail.html", _detail_context(pod))


@login_required
@require_GET
def pod_status_fragment(request: HttpRequest, pod_id: uuid.UUID) -> HttpResponse:
    pod = _owned(request, pod_id)
    return render(request, "pods/_status.html", _detail_context(pod))


@login_required
@require_POST
def pod_stop(request: HttpRequest, pod_id: uuid.UUID) -> HttpResponse:
    pod = services.pod_stop(pod=_owned(request, pod_id))
    messages.success(request, f"Stopping {pod.name}: billing has ended.")
    return redirect("pods:detail", pod_id=pod.pk)


@login_required
@require_POST
def pod_resume(request: HttpRequest, pod_id: uuid.UUID) -> HttpResponse:
    try:
        pod = services.pod_resume(pod=_owned(request, pod_id))
    except (services.PodNotResumableError, services.SpendRefusedError) as exc:
        messages.warning(request, str(exc))
    except volumes.VolumeInputError as exc:
        messages.warning(request, exc.message)
    else:
        messages.success(request, f"Resuming {pod.name}: {pod.status_reason}")
    return redirect("pods:detail", pod_id=pod_id)


@login_required
@require_POST
def pod_remove(request: HttpRequest, pod_id: uuid.UUID) -> HttpResponse:
    """Remove a stopped or failed pod from the lists (its usage and events stay)."""
    pod = services.pod_terminate(pod=_owned(request, pod_id))
    if pod.status == PodStatus.TERMINATED:
        messages.success(request, f"Removed {pod.name}.")
        return redirect("pods:list")
    messages.info(request, f"Stopping {pod.name} first: billing has ended.")
    return redirect("pods:detail", pod_id=pod.pk)


@login_required
@require_POST
def pod_logs_request(request: HttpRequest, pod_id: uuid.UUID) -> HttpResponse:
    """Ask the node for the container's last lines; the answer arrives with its next
    heartbeat, which the logs page polls for."""
    pod = _owned(request, pod_id)
    if upstream.runs_upstream(pod):
        # An upstream container: its cloud has the log (or says it has no log API).
        got = upstream.pod_upstream_logs(pod=pod, tail=LOG_TAIL)
        return render(
            request, "pods/logs.html", {"pod": pod, "upstream_logs": got, "tail": LOG_TAIL}
        )
    command = services.pod_fetch_logs(pod=pod, tail=LOG_TAIL)
    if command is None:
        messages.warning(request, f"Pod is {pod.status}: it has no container to read logs from.")
        return redirect("pods:detail", pod_id=pod.pk)
    return redirect("pods:logs", pod_id=pod.pk, command_id=command.pk)


@login_required
@require_GET
def pod_logs(request: HttpRequest, pod_id: uuid.UUID, command_id: uuid.UUID) -> HttpResponse:
    """The answer to one log request: the page, or (for portal.js) just the fragment."""
    pod = _owned(request, pod_id)
    command = (
        NodeCommand.objects.filter(pk=command_id, node_id=pod.node_id).first()
        if pod.node_id
        else None
    )
    if command is None or command.payload.get("pod_id") != str(pod.pk):
        raise Http404
    context = {"pod": pod, "command": command, "tail": LOG_TAIL}
    if request.headers.get("X-Requested-With") == "fetch":
        return render(request, "pods/_logs.html", context)
    return render(request, "pods/logs.html", context)
