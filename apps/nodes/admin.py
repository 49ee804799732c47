from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string

from apps.core.admin import ReadOnlyInline
from apps.nodes import services
from apps.nodes.lifecycle import IllegalNodeTransitionError
from apps.nodes.models import (
    FleetAlert,
    Gpu,
    LivenessState,
    Node,
    NodeCommand,
    NodeEvent,
    Workload,
)


class GpuInline(ReadOnlyInline):
    model = Gpu
    fields = (
        "index",
        "model",
        "name",
        "uuid",
        "memory_total_mb",
        "memory_used_mb",
        "utilization_pct",
        "temperature_c",
        "power_w",
        "telemetry_at",
    )


class WorkloadInline(ReadOnlyInline):
    model = Workload
    fields = (
        "pod_id",
        "wanted",
        "gpu_indices",
        "state",
        "exit_code",
        "container_id",
        "observed_at",
        "error",
    )


class CommandInline(ReadOnlyInline):
    model = NodeCommand
    fields = ("created_at", "type", "status", "deliveries", "acked_at", "error")
    ordering = ("-created_at",)
    show_change_link = True


class EventInline(ReadOnlyInline):
    model = NodeEvent
    fields = ("at", "from_status", "to_status", "reason")


EDITABLE = ("price_per_gpu_hour", "cpu_per_gpu_millicores", "ram_per_gpu_mb")


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = (
        "hostname",
        "status",
        "gpu_summary",
        "last_heartbeat_at",
        "provider_id",
        "agent_version",
        "address",
    )
    list_filter = ("status",)
    search_fields = ("hostname", "id", "provider_instance_id", "gpus__uuid")
    readonly_fields = [
        "telemetry",
        *(f.name for f in Node._meta.fields if f.name not in EDITABLE),
    ]
    inlines = (GpuInline, WorkloadInline, EventInline, CommandInline)
    actions = ("drain", "undrain", "retire")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Node]:
        return super().get_queryset(request).prefetch_related("gpus")

    @admin.display(description="Telemetry")
    def telemetry(self, node: Node) -> str:
        return render_to_string(
            "nodes/_telemetry.html", {"node": node, "gpus": list(node.gpus.all())}
        )

    @admin.display(description="GPUs")
    def gpu_summary(self, node: Node) -> str:
        gpus = list(node.gpus.all())
        if not gpus:
            return "CPU only"
        return f"{len(gpus)}× {gpus[0].model}"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # nodes come from agents registering

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # a node leaves by being retired (its history and billing stay)

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "price_per_gpu_hour" and field is not None:
            field.label = "Asking price per GPU-hour (micro-dollars)"
            field.help_text = "1,000,000 = $1.00. Blank: the platform default for its GPU model."
        if db_field.name == "cpu_per_gpu_millicores" and field is not None:
            field.label = "CPU per GPU (millicores)"
            field.help_text = "What each GPU brings to a pod; 1000 = one core. Blank: cores / GPUs."
        if db_field.name == "ram_per_gpu_mb" and field is not None:
            field.label = "RAM per GPU (MB)"
            field.help_text = "What each GPU brings to a pod. Blank: the node's RAM / GPUs."
        return field

    def save_model(self, request: HttpRequest, obj: Node, form: Any, change: bool) -> None:
        """The price and the per-GPU share are the editable fields; they go through services,
        which write those columns alone (a plain save would write back every field as the form
        loaded it)."""
        services.node_price_set(node=obj, price_per_gpu_hour=obj.price_per_gpu_hour)
        services.node_share_set(
            node=obj,
            cpu_per_gpu_millicores=obj.cpu_per_gpu_millicores,
            ram_per_gpu_mb=obj.ram_per_gpu_mb,
        )

    def _apply(self, request: HttpRequest, queryset: QuerySet[Node], action, verb: str) -> None:
        done = 0
        for node in queryset:
            try:
                action(node=node, reason=f"{verb} by {request.user}")
                self.log_change(request, node, f"{verb.capitalize()} (admin action).")
                done += 1
            except IllegalNodeTransitionError as exc:
                self.message_user(request, str(exc), level=messages.WARNING)
        self.message_user(request, f"{verb.capitalize()} {done} node(s).")

    @admin.action(description="Drain (take no new pods)")
    def drain(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        self._apply(request, queryset, services.node_drain, "drained")

    @admin.action(description="Undrain (take pods again)")
    def undrain(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        self._apply(request, queryset, services.node_undrain, "undrained")

    @admin.action(description="Retire (revoke token, never schedule again)")
    def retire(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        self._apply(request, queryset, services.node_retire, "retired")


@admin.register(NodeCommand)
class NodeCommandAdmin(admin.ModelAdmin):
    list_display = ("created_at", "node", "type", "status", "deliveries", "acked_at")
    list_filter = ("status", "type")
    search_fields = ("id", "node__hostname")
    readonly_fields = [f.name for f in NodeCommand._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(LivenessState)
class LivenessStateAdmin(admin.ModelAdmin):
    """The mass-silence guard. Releasing it declares the silence real: silent nodes past their
    grace (from their last beat) go OFFLINE at the next sweep."""

    list_display = ("__str__", "guard_reason", "last_sweep_at", "grace_epoch", "operator_release")
    readonly_fields = (
        "last_sweep_at",
        "grace_epoch",
        "guard_since",
        "guard_reason",
        "operator_release",
    )
    actions = ("release_guard",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(description="Release the guard (the silent nodes are really gone)")
    def release_guard(self, request: HttpRequest, queryset: QuerySet[LivenessState]) -> None:
        services.liveness_guard_release(reason=f"released by {request.user}")
        self.message_user(request, "Released: the next sweep judges silent nodes.")


@admin.register(FleetAlert)
class FleetAlertAdmin(admin.ModelAdmin):
    list_display = ("started_at", "kind", "message", "silent_nodes", "fleet_nodes", "ended_at")
    list_filter = ("kind",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
