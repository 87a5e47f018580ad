"""The event vocabulary is the product's contract: pinned here, value by value."""

from audit.events import EVENT_MAX_LENGTH, RECORDED_BY_THE_AUDIT_LOG, AuditEventType
from audit.models import AuditLog

PRODUCT_EVENT_TYPES = {
    "USER_REGISTERED", "USER_LOGIN", "USER_CREATED", "USER_UPDATED", "USER_DELETED",
    "SESSION_STARTED", "SESSION_STOPPED", "SESSION_EXTENDED", "SESSION_EXPIRED",
    "RESOURCE_CREATED", "RESOURCE_UPDATED", "RESOURCE_DELETED",
    "CREDENTIAL_CREATED", "CREDENTIAL_DELETED",
    "ROLE_CREATED", "ROLE_UPDATED", "ROLE_DELETED",
}  # fmt: skip
# What the audit log records about itself: retention, exports, log streams.
OWN_EVENT_TYPES = {
    "AUDIT_LOG_PRUNED", "AUDIT_LOG_EXPORTED", "AUDIT_LOG_STREAM_CREATED",
    "AUDIT_LOG_STREAM_UPDATED", "AUDIT_LOG_STREAM_DELETED", "AUDIT_LOG_STREAM_PAUSED",
}  # fmt: skip


def test_vocabulary_is_the_products_seventeen_types_and_the_logs_own() -> None:
    assert len(PRODUCT_EVENT_TYPES) == 17
    assert set(AuditEventType.values) == PRODUCT_EVENT_TYPES | OWN_EVENT_TYPES
    assert RECORDED_BY_THE_AUDIT_LOG == OWN_EVENT_TYPES


def test_every_type_has_a_description() -> None:
    for event in AuditEventType:
        assert event.label and event.label != event.value.replace("_", " ").title()


def test_column_fits_every_value_and_the_model_uses_the_vocabulary() -> None:
    assert max(len(v) for v in AuditEventType.values) <= EVENT_MAX_LENGTH
    field = AuditLog._meta.get_field("event")
    assert field.max_length == EVENT_MAX_LENGTH
    assert {value for value, _ in field.choices} == PRODUCT_EVENT_TYPES | OWN_EVENT_TYPES  # type: ignore[misc,union-attr]
