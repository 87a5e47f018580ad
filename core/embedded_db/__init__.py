"""Django database engine for the embedded PostgreSQL server (see core/embedded_postgres.py).

It is this project's PostgreSQL backend (core/postgresql: Django's, with a cheaper check of
pooled connections), plus one step: before the first connection of a process
it makes sure the embedded server is running. Processes that never touch the database
(``manage.py help``, schema export) therefore never start a server.
"""
