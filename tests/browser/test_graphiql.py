"""GraphiQL at /graphql/ in a real Chromium with no route off the server: it renders from
this backend's own files, runs a query with the browser's session (and its CSRF token),
and receives a subscription's events over the WebSocket."""

from __future__ import annotations

from urllib.parse import quote

from audit.events import AuditEventType as E
from audit.selectors import AuditLogFilter, AuditLogPosition, audit_log_count
from audit.services import audit_log_record
from core.models import User
from graphql_api.cursors import cursor_encode
from tests.browser.conftest import Visit, sign_in_with_cookie
from tests.support import TRANSACTIONAL

pytestmark = TRANSACTIONAL


def open_graphiql(visit: Visit, query: str) -> None:
    visit.page.goto(f"{visit.site}/graphql/?q={quote(query)}")
    visit.page.locator(".graphiql-editor").first.wait_for(timeout=20_000)


def run(visit: Visit) -> None:
    visit.page.locator(".graphiql-execute-button").click()


def response_text(visit: Visit) -> str:
    text: str = visit.page.locator(".graphiql-response").inner_text()
    return text


def test_graphiql_runs_a_query_with_the_session(visit: Visit, admin: User) -> None:
    sign_in_with_cookie(visit, admin)
    open_graphiql(visit, "{ auditLogs(first: 3) { totalCount edges { node { event } } } }")
    run(visit)
    visit.page.locator(".graphiql-response", has_text="totalCount").wait_for()
    total = audit_log_count(organization=admin.organization, filters=AuditLogFilter())  # type: ignore[arg-type]
    # The response pane is an editor: its text, not a JSON document.
    assert f'"totalCount": {total}' in response_text(visit)


def test_graphiql_receives_a_subscription_event(visit: Visit, admin: User) -> None:
    org = admin.organization
    assert org is not None
    sign_in_with_cookie(visit, admin)
    # From a marker's cursor: nothing recorded after it can be missed, however long the
    # subscription takes to start.
    marker = audit_log_record(organization=org, event=E.ROLE_CREATED, actor=None, ip=None)
    cursor = cursor_encode(
        organization_id=org.pk,
        position=AuditLogPosition.of(marker),
        stream_txid=marker.stream_txid,
    )
    open_graphiql(
        visit,
        f'subscription {{ auditLogCreated(after: "{cursor}") {{ node {{ event details }} }} }}',
    )
    run(visit)
    audit_log_record(
        organization=org, event=E.CREDENTIAL_DELETED, actor=None, ip=None, details={"via": "ws"}
    )
    visit.page.locator(".graphiql-response", has_text="CREDENTIAL_DELETED").wait_for(timeout=15_000)
    assert '"via": "ws"' in response_text(visit)
