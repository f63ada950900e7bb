"""An Optuna storage is read only once it is known to be one: a SQLite file that is damaged or holds another
program's tables is refused before Optuna writes its own tables into it, and a storage that cannot be opened
(a bad URL, a missing driver, an unreachable server, an old schema) is one line naming its URL.

``hydra.sweeper.storage`` is an SQLAlchemy URL (an RDB storage), ``journal:///<file>`` (Optuna's journal file,
for file systems where SQLite's locks are unreliable; the path is relative as in ``sqlite:///``, absolute with a
fourth slash) or null (in memory: the study ends with its sweep)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import optuna
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from rigl_repro.errors import ConfigError

OPTUNA_TABLES = frozenset({"studies", "version_info"})  # present in every Optuna RDB storage
JOURNAL_SCHEME = "journal:///"


def journal_path(url: str | None) -> Path | None:
    """The file of a ``journal:///`` storage, or None for other storages."""
    if url is None or not url.startswith(JOURNAL_SCHEME):
        return None
    return Path(url[len(JOURNAL_SCHEME):])


def journal_storage(path: Path) -> optuna.storages.JournalStorage:
    """Optuna's journal storage in the file ``path`` (made with its folder if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def storage_for_runs(url: str) -> optuna.storages.BaseStorage:
    """The study's storage as a trial's run opens it to report its epochs: the journal file, or the RDB
    without heartbeats (the sweeper records those)."""
    path = journal_path(url)
    return journal_storage(path) if path is not None else optuna.storages.RDBStorage(url)


def sqlite_path(url: str | None) -> Path | None:
    """The file of an ``sqlite:///`` URL, or None for other URLs (and in-memory or unparsable ones)."""
    if url is None or journal_path(url) is not None:
        return None
    try:
        parsed = make_url(url)
    except ArgumentError:  # not a URL at all: opening it says so in one line
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def sqlite_problem(path: Path) -> str | None:
    """Why the file at ``path`` cannot be an Optuna storage, or None: a missing or empty file (Optuna creates
    its tables there) or an Optuna database. The file is only read, never written."""
    if path.is_dir():
        return f"{path} is a directory, not a database file"
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:  # read-only: even a foreign file's journal is left alone
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            (check,) = connection.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.Error as error:
        return f"{path} is not a readable SQLite database ({error})"
    if check != "ok":
        return f"{path} is a damaged SQLite database (quick_check: {' '.join(str(check).split())})"  # one line
    if tables and not OPTUNA_TABLES <= tables:
        names = ", ".join(sorted(tables))
        return f"{path} is an SQLite database of something else (tables: {names}), not an Optuna storage"
    return None


def check_storage(url: str | None) -> None:
    """Refuse, in one line, a storage URL whose SQLite file is not an Optuna storage (nothing is written)."""
    journal = journal_path(url)
    if journal is not None and (journal.is_dir() or not journal.name):
        raise ConfigError(f"hydra.sweeper.storage={url}: a journal storage is a file, e.g. journal:///outputs/optuna.log")
    path = sqlite_path(url)
    try:
        problem = None if path is None else sqlite_problem(path)
    except OSError as error:  # a folder on the way that cannot be searched
        problem = f"{path} cannot be read ({error.strerror or error})"
    if problem:
        raise ConfigError(f"hydra.sweeper.storage={url}: {problem}; point the URL at an Optuna storage or at a new "
                          "file, e.g. sqlite:///outputs/optuna.db")  # fmt: skip


def first_line(error: BaseException) -> str:
    """The error's first non-empty line without its full stop (SQLAlchemy appends SQL and links below it)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else type(error).__name__


@contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn what opening a storage raises (SQLAlchemy's errors, a missing driver, Optuna's refusal of another
    schema version) into a one-line ConfigError naming the URL."""
    try:
        yield
    except (SQLAlchemyError, ImportError, RuntimeError, OSError) as error:  # OSError: its folder cannot be made
        reason = first_line(error)
        if error.__cause__ is not None:  # Optuna's "failed to import DB access module" names the module there
            reason = f"{reason} ({first_line(error.__cause__)})"
        raise ConfigError(f"hydra.sweeper.storage={url} cannot be opened: {reason}; check the URL (an SQLAlchemy "
                          "URL such as sqlite:///outputs/optuna.db), its database driver and server") from None
