"""The customer's usage page (`/billing/usage/`): the pod intervals billing charged, filtered,
paged and exportable as CSV. It reads pods' usage records, so it lives with pods; it shares the
billing pages' filters and helpers."""

from django import forms
from django.contrib.auth.decorators import login_required
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.billing.views import RangeForm, csv_response, page_of, query_without_page
from apps.core.money import micros_to_usd
from apps.pods.selectors import usage_records


class UsageFilterForm(RangeForm):
    pod = forms.UUIDField(required=False, label="Pod id")


@login_required
@require_GET
def usage(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    form = UsageFilterForm(request.GET)
    if not form.is_valid():
        return render(
            request, "billing/usage.html", {"form": form, "page": None, "query": ""}, status=400
        )
    since, until = form.bounds()
    pod = form.cleaned_data["pod"]
    records = usage_records(
        request.user,  # type: ignore[arg-type]
        pod_id=str(pod) if pod else None,
        since=since,
        until=until,
    )
    if request.GET.get("format") == "csv":
        rows = (
            [
                r.period_start.isoformat(),
                r.period_end.isoformat(),
                r.pod_id,
                r.pod.name,
                r.seconds,
                r.gpu_count,
                micros_to_usd(r.price_per_gpu_hour, places=6),
                micros_to_usd(r.amount, places=6),
                r.amount,
            ]
            for r in records.iterator(chunk_size=1000)
        )
        header = [
            "period_start_utc",
            "period_end_utc",
            "pod_id",
            "pod_name",
            "seconds",
            "gpu_count",
            "price_per_gpu_hour_usd",
            "amount_usd",
            "amount_micros",
        ]
        return csv_response("usage.csv", header, rows)
    totals = records.aggregate(seconds=Sum("seconds"), amount=Sum("amount"))
    context = {
        "form": form,
        "page": page_of(request, records),
        "query": query_without_page(request),
        "total_seconds": totals["seconds"] or 0,
        "total_amount": totals["amount"] or 0,
    }
    return render(request, "billing/usage.html", context)
