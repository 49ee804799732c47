"""The operators' view of the catalog: templates (read-only here; `manage.py
seed_model_catalog` owns them) and deployments with their replicas and events (view-only), with
a stop action that goes through `deployment_stop`, never a form save."""

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.catalog.models import Deployment, DeploymentEvent, ModelTemplate, Replica
from apps.catalog.services import deploy, scaling
from apps.core.admin import ReadOnlyInline


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


class DeploymentScalingForm(forms.ModelForm):
    """The admin's edit of a deployment: its scaling settings only, checked like the API's."""

    class Meta:
        model = Deployment
        fields = scaling.SCALING_FIELDS

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        assert self.instance is not None  # noqa: S101 - the admin edits existing rows only
        changes = {n: data[n] for n in scaling.SCALING_FIELDS if n in data and data[n] is not None}
        try:
            scaling.scaling_validate(
                current=scaling.ScalingSettings.of(Deployment.objects.get(pk=self.instance.pk)),
                changes=changes,
            )
        except scaling.ScalingSettingsError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return data


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
    # Only the scaling settings can change here, and only through their service.
    form = DeploymentScalingForm
    readonly_fields = [
        f.name for f in Deployment._meta.fields if f.name not in scaling.SCALING_FIELDS
    ]
    inlines = (ReplicaInline, DeploymentEventInline)
    actions = ("stop",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Its scaling settings only (save_model goes through the service).
        if obj is not None and not deploy.deployment_is_live(obj):
            return False
        return request.user.has_perm("catalog.change_deployment")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Deployment, form: Any, change: bool) -> None:
        changes = {
            n: form.cleaned_data[n] for n in form.changed_data if n in scaling.SCALING_FIELDS
        }
        if changes:
            scaling.deployment_scaling_update(
                deployment_id=obj.pk, changes=changes, actor=f"operator {request.user}"
            )

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
