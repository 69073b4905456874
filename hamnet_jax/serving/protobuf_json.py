"""A protobuf message as the JSON Triton's HTTP API answers with: field names as in the
.proto, enums by name, and 64-bit integers as JSON numbers (protobuf's own JSON mapping
writes them as strings, which `tritonclient.http` users would then have to convert)."""

from __future__ import annotations

import base64
from typing import Any


def message_json(message: Any) -> dict[str, Any]:
    """The fields `message` has set, recursively, as plain JSON values."""
    return {field.name: _field_json(field, value) for field, value in message.ListFields()}


def _field_json(field: Any, value: Any) -> Any:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        return {str(k): _value_json(value_field, v) for k, v in value.items()}
    if field.is_repeated:
        return [_value_json(field, v) for v in value]
    return _value_json(field, value)


def _value_json(field: Any, value: Any) -> Any:
    if field.message_type is not None:
        return message_json(value)
    if field.enum_type is not None:
        return field.enum_type.values_by_number[value].name
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value
