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
