"""Django database engine for PostgreSQL: Django's own backend, with pooled connections
checked by core/pool.py instead of a query on every checkout.

Django installs psycopg_pool's ``check_connection`` when ``CONN_HEALTH_CHECKS`` is on (it is,
core/settings.py), a round trip to the server each time a request takes a connection.
This backend keeps Django's pool and replaces that check with ``pooled_connection_check``,
which asks the server only when the connection's socket shows that something happened
to it. core/embedded_db builds on it.
"""
