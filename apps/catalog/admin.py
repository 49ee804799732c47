"""The operators' view of the catalog: templates (read-only here; `manage.py
seed_model_catalog` owns them) and deployments with their replicas and events (view-only), with
a stop action that goes through `deployment_stop`, never a form save."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.catalog.models import Deployment, DeploymentEvent, ModelTemplate, Replica
from apps.catalog.services import deploy


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReplicaInline(ReadOnlyInline):
    model = Replica
    fields = ("id", "status", "status_reason", "pod", "base_url", "ready_at", "last_health_at")
    readonly_fields = fields


class DeploymentEventInline(ReadOnlyInline):
    model = DeploymentEvent
    fields = ("at", "from_status", "to_status", "reason")
    readonly_fields = fields


@admin.register(ModelTemplate)
class ModelTemplateAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "category", "recommended_gpu", "gpu_count", "is_active")
    list_filter = ("category", "is_active", "recommended_gpu")
    search_fields = ("slug", "name", "served_model")
    readonly_fields = [f.name for f in ModelTemplate._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "owner",
        "model_name",
        "status",
        "gpu_model",
        "gpu_count",
        "replicas",
        "created_at",
    )
    list_filter = ("status", "gpu_model")
    search_fields = ("id", "name", "model_name", "owner__email")
    list_select_related = ("owner",)
    readonly_fields = [f.name for f in Deployment._meta.fields]
    inlines = (ReplicaInline, DeploymentEventInline)
    actions = ("stop",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # view-only: a deployment changes through its services (the action)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_stop_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("catalog.change_deployment")

    @admin.action(description="Stop (its key stops working, its pods stop)", permissions=["stop"])
    def stop(self, request: HttpRequest, queryset: QuerySet[Deployment]) -> None:
        stopped = 0
        for deployment in queryset:
            if not deploy.deployment_is_live(deployment):
                continue
            deploy.deployment_stop(
                deployment=deployment, reason=f"stopped by operator {request.user}"
            )
            self.log_change(request, deployment, "Stopped (admin action).")
            stopped += 1
        self.message_user(request, f"Stopped {stopped} deployment(s).")
