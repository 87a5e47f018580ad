"""Django database engine for the embedded PostgreSQL server (see core/embedded_postgres.py).

It is Django's PostgreSQL backend, plus one step: before the first connection of a process
it makes sure the embedded server is running. Processes that never touch the database
(``manage.py help``, schema export) therefore never start a server.
"""
