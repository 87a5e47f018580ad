"""The Django project (settings, urls, asgi) and the accounts domain: organizations, users,
roles, API tokens, and the predicates that decide who may read audit logs."""
