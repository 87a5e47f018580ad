"""The root GraphQL schema: composes the query, mutation and subscription types and the request-wide extensions.

Extensions, in order: error coding (graphql_api/errors.py), the cost limits (settings
``GRAPHQL_MAX_DEPTH``, ``GRAPHQL_MAX_ALIASES``, ``GRAPHQL_MAX_TOKENS``; README), and the
parse and validation caches.

strawberry-django's optimizer is applied where querysets are built: ``auditLogs`` calls
``strawberry_django.optimizer.optimize`` on its page query (graphql_api/queries.py), which
loads only the columns of the selected fields. Its schema extension,
``DjangoOptimizerExtension``, is not installed: it does the same for resolvers that
return querysets (none here), through a hook that graphql-core then calls for every field
of every entry, which cost 40% of the execution time of a 50-entry page (profiling notes
in docs/PERFORMANCE.md). A future resolver that returns a queryset calls ``optimize`` too.
"""

from __future__ import annotations

import functools
from typing import Any

import strawberry
from django.conf import settings
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types import ExecutionContext

from graphql_api.errors import CodedErrors
from graphql_api.mutations import AuditLogMutations
from graphql_api.queries import AuditLogQueries
from graphql_api.streams import AuditLogStreamMutations, AuditLogStreamQueries
from graphql_api.subscriptions import AuditLogSubscriptions


@strawberry.type(description="Reading the audit log and its log streams.")
class Query(AuditLogQueries, AuditLogStreamQueries):
    pass


@strawberry.type(description="Recording audit events; managing log streams.")
class Mutation(AuditLogMutations, AuditLogStreamMutations):
    pass


@strawberry.type(description="Following the audit log live.")
class Subscription(AuditLogSubscriptions):
    pass


class AuditExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """graphql-core 3.3 builds each event of a subscription with a shallow copy of the
    subscription's executor, so every event adds its entries to one shared memo of
    collected sub-fields (keyed by lists made afresh for each event), and a stream that
    delivers for hours grows without bound (the soak test saw 8 MB a minute). Each event
    gets a memo of its own, freed with it. tests/graphql_api/test_schema.py pins both the
    upstream behavior and this fix."""

    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        executor._relevant_sub_fields = {}
        return executor


class AuditSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Client errors are not server faults, so they are not logged; CodedErrors logs
        # every unexpected error with its traceback.
        return None


@functools.cache
def limit_rules(max_depth: int, max_aliases: int) -> list[Any]:
    # Built once per setting and shared (the rules hold no state), so that the validation
    # cache, which is keyed by the rules, hits across requests.
    return [
        *QueryDepthLimiter(max_depth=max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=max_aliases).validation_rules,
    ]


def _extensions() -> list[Any]:
    return [
        CodedErrors,
        lambda: MaxTokensLimiter(max_token_count=settings.GRAPHQL_MAX_TOKENS),
        lambda: AddValidationRules(
            limit_rules(settings.GRAPHQL_MAX_DEPTH, settings.GRAPHQL_MAX_ALIASES)
        ),
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
    ]


schema = AuditSchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=_extensions(),
    execution_context_class=AuditExecutionContext,
)
