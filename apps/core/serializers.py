from typing import Any

from rest_framework import serializers


class StrictSerializer(serializers.Serializer):
    """Input serializers: reject fields they do not declare, so a typo is a 400 that names the
    field instead of a silently ignored setting; and take a string field only as a JSON string
    (DRF's CharField would turn `0` or `true` into "0" / "True")."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: "Unknown field." for name in unknown})
            not_strings = {
                name: "Not a valid string."
                for name, field in self.fields.items()
                if isinstance(field, serializers.CharField)
                and not field.read_only
                and name in data
                and data[name] is not None
                and not isinstance(data[name], str)
            }
            if not_strings:
                raise serializers.ValidationError(not_strings)
        return super().to_internal_value(data)


def env_names_checked(env: dict[str, str], *, max_vars: int | None = None) -> dict[str, str]:
    """`env` if every name is a shell variable name (a letter or `_`, then letters, digits
    and `_`) and there are at most `max_vars`; otherwise a ValidationError naming the bad
    names. Shared by every serializer that takes a container's environment."""
    if max_vars is not None and len(env) > max_vars:
        raise serializers.ValidationError(f"At most {max_vars} variables.")
    bad = [
        k
        for k in env
        if not k
        or not (k[0].isalpha() or k[0] == "_")
        or not all(c.isalnum() or c == "_" for c in k)
    ]
    if bad:
        raise serializers.ValidationError(f"Invalid variable name(s): {', '.join(bad)}.")
    return env
