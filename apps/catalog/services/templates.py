"""The model catalog's templates."""

from dataclasses import dataclass

from django.db import transaction

from apps.catalog.locks import lock_templates
from apps.catalog.models import ModelTemplate
from apps.catalog.seed import template_rows


@dataclass(frozen=True)
class SeedResult:
    created: int
    updated: int
    unchanged: int


@transaction.atomic
def templates_seed() -> SeedResult:
    """Create or update every template of `apps/catalog/seed.py` by slug. Idempotent: a second
    run changes nothing. Templates not in the list are left as they are (an operator's own)."""
    created = updated = unchanged = 0
    existing = lock_templates()
    for row in template_rows():
        template = existing.get(row["slug"])
        if template is None:
            ModelTemplate.objects.create(**row)
            created += 1
            continue
        changed = [name for name, value in row.items() if getattr(template, name) != value]
        if not changed:
            unchanged += 1
            continue
        for name in changed:
            setattr(template, name, row[name])
        template.save(update_fields=[*changed, "updated_at"])
        updated += 1
    return SeedResult(created=created, updated=updated, unchanged=unchanged)
