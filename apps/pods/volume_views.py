"""Portal page for volumes: list the owner's volumes with their usage and price, create one, and
delete one no pod holds. Views parse, call the volume services, and render."""

import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.nodes.models import Node
from apps.pods import volumes
from apps.pods.models import Volume, VolumeStatus
from apps.pods.serializers import VolumeCreateInput


class VolumeForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="e.g. “datasets”.")
    size_gb = forms.IntegerField(label="Size (GB)", min_value=1, max_value=1_000_000)
    node = forms.ChoiceField(
        required=False, help_text="Blank: the online node with the most free disk."
    )

    def __init__(self, *args: Any, nodes: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["node"]
        assert isinstance(field, forms.ChoiceField)  # noqa: S101 - declared just above
        field.choices = [("", "— any —"), *nodes]


def _node_choices() -> list[tuple[str, str]]:
    return [(str(n.pk), n.hostname) for n in Node.objects.schedulable()]


@login_required
def volume_list(request: HttpRequest) -> HttpResponse:
    form = VolumeForm(request.POST or None, nodes=_node_choices())
    if request.method == "POST" and form.is_valid():
        data = {k: v for k, v in form.cleaned_data.items() if v not in (None, "")}
        serializer = VolumeCreateInput(data=data)
        if serializer.is_valid():
            try:
                volume = volumes.volume_create(owner=request.user, **serializer.validated_data)  # type: ignore[arg-type]
            except volumes.VolumeInputError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                messages.success(request, f"Volume {volume.name} is being created.")
                return redirect("pods:volumes")
        else:
            for field, errors in serializer.errors.items():
                for error in errors:
                    form.add_error(field if field in form.fields else None, str(error))
    owned = (
        Volume.objects.for_user(request.user)
        .exclude(status=VolumeStatus.DELETED)
        .select_related("node")
    )
    return render(
        request,
        "pods/volumes.html",
        {"form": form, "volumes": owned},
        status=400 if form.errors else 200,
    )


@login_required
@require_POST
def volume_delete(request: HttpRequest, volume_id: uuid.UUID) -> HttpResponse:
    volume = get_object_or_404(Volume.objects.for_user(request.user), pk=volume_id)
    try:
        volumes.volume_delete(volume=volume)
    except volumes.VolumeInUseError as exc:
        messages.warning(request, str(exc))
    else:
        messages.success(request, f"Deleting {volume.name}: its billing has ended.")
    return redirect("pods:volumes")
