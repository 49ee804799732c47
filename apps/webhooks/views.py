"""Portal pages for webhooks: the user's endpoints (add, delete, secret shown once) and one
endpoint's delivery log."""

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.webhooks.models import EventType, all_event_types
from apps.webhooks.selectors import deliveries_of, endpoints_of
from apps.webhooks.services import EndpointInputError, endpoint_create, endpoint_disable


class EndpointForm(forms.Form):
    url = forms.URLField(
        max_length=2000, assume_scheme="https", label="URL", help_text="We POST JSON to it."
    )
    description = forms.CharField(max_length=200, required=False)
    event_types = forms.MultipleChoiceField(
        choices=EventType.choices,
        initial=all_event_types,
        widget=forms.CheckboxSelectMultiple,
        label="Events",
    )


@login_required
def endpoints(request: HttpRequest) -> HttpResponse:
    created = None
    form = EndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            created = endpoint_create(user=request.user, **form.cleaned_data)
        except EndpointInputError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            form = EndpointForm()
    status = 400 if form.errors else 200
    context: dict[str, Any] = {
        "form": form,
        "created": created,
        "endpoints": endpoints_of(request.user),
    }
    return render(request, "webhooks/endpoints.html", context, status=status)


@login_required
def deliveries(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    endpoint = get_object_or_404(endpoints_of(request.user), pk=endpoint_id)
    page = Paginator(deliveries_of(endpoint), 50).get_page(request.GET.get("page"))
    return render(request, "webhooks/deliveries.html", {"endpoint": endpoint, "page": page})


@login_required
@require_POST
def endpoint_delete(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    endpoint = get_object_or_404(endpoints_of(request.user), pk=endpoint_id)
    endpoint_disable(endpoint=endpoint)
    messages.success(request, f"Disabled {endpoint.url}: no more events go to it.")
    return redirect("webhooks:endpoints")
