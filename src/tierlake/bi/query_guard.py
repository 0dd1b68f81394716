"""What the SQL page lets through: one read-only SELECT, judged by DuckDB's own parser.

The statement's type comes from ``extract_statements`` (DuckDB's parser), never from
guessing at the text; only ``SELECT`` (which includes ``WITH``, ``VALUES``, ``FROM t``,
``DESCRIBE``, ``SHOW`` and ``SUMMARIZE``) passes. File access is off in the connection
(``enable_external_access=false``, locked), so ``read_csv``, ``glob`` and friends inside a
SELECT fail in DuckDB; :func:`explain_error` turns that into a :class:`QueryRefused`, and
a file named as a table (``FROM 'orders.parquet'``) is refused before it runs.
"""

from __future__ import annotations

import re

import duckdb

from tierlake.bi.model import QueryError, QueryRefused

__all__ = ["ALLOWED", "QueryError", "check_select", "explain_error"]

ALLOWED = ("only read-only SELECT queries over the curated tables are allowed here (one "
           "statement; WITH, DESCRIBE and SHOW work too)")
_KINDS = {
    "INSERT": "writes (INSERT)", "UPDATE": "writes (UPDATE)", "DELETE": "writes (DELETE)",
    "CREATE": "creates objects (CREATE)", "DROP": "drops objects (DROP)",
    "ALTER": "changes objects (ALTER)", "COPY": "copies data to or from files (COPY)",
    "ATTACH": "attaches a database (ATTACH)", "DETACH": "detaches a database (DETACH)",
    "PRAGMA": "changes settings (PRAGMA)", "SET": "changes settings (SET)",
    "VARIABLE_SET": "changes settings (SET)", "LOAD": "installs or loads extensions",
    "EXPORT": "exports the database to files (EXPORT)", "CALL": "calls a procedure (CALL)",
    "TRANSACTION": "controls transactions", "EXPLAIN": "explains a plan (EXPLAIN)",
}
_FILE_LIKE = re.compile(r"[/\\:]|\.(csv|tsv|txt|parquet|json|jsonl|ndjson|gz|zst|db|duckdb|"
                        r"sqlite|arrow|xlsx?)$", re.IGNORECASE)

_EXTENSION = re.compile(r'with name "?([\w.]+)"? is not in the catalog, but it exists in the '
                        r"(\w+) extension")

_MISSING_TABLE = re.compile(r"Table with name (.+?) does not exist")


def check_select(con: duckdb.DuckDBPyConnection, text: str) -> str:
    """The one SELECT statement in ``text``, or a :class:`QueryRefused` saying why not."""
    text = text.strip()
    if not text:
        raise QueryRefused(f"the query is empty; {ALLOWED}")
    if len(text) > 100_000:
        raise QueryRefused(f"the query is {len(text)} characters long; keep it under 100000")
    try:
        statements = con.extract_statements(text)
    except duckdb.Error as exc:
        raise QueryError(_message(exc)) from exc
    if len(statements) != 1:
        raise QueryRefused(f"the text holds {len(statements)} statements; {ALLOWED}")
    kind = statements[0].type.name
    if kind != "SELECT":
        what = _KINDS.get(kind, f"is a {kind} statement")
        raise QueryRefused(f"this statement {what}; {ALLOWED}")
    try:
        names = con.get_table_names(text)
    except duckdb.Error:
        names = set()  # it cannot bind some joins; running the query tells (explain_error)
    files = sorted(n for n in names if _FILE_LIKE.search(n))
    if files:
        raise _files_refused(files)
    return text


def _files_refused(files: list[str]) -> QueryRefused:
    return QueryRefused(f"reading files is not allowed ({', '.join(files)}); query the "
                        "curated tables by name instead")


def explain_error(exc: duckdb.Error) -> ValueError:
    """DuckDB's error as the page shows it: file access refused, anything else as is."""
    if isinstance(exc, duckdb.PermissionException):
        return QueryRefused("reading or writing files, extensions or the network is not "
                            f"allowed here; {ALLOWED}")
    missing = _MISSING_TABLE.search(str(exc))
    if missing and _FILE_LIKE.search(missing.group(1)):  # FROM 'file.csv', files being off
        return _files_refused([missing.group(1)])
    needs = _EXTENSION.search(str(exc))
    if needs:  # DuckDB would suggest INSTALL/LOAD, which the page refuses anyway
        return QueryRefused(f"{needs.group(1)} needs the DuckDB extension {needs.group(2)}, and "
                            f"extensions (files, other databases, the network) are not "
                            f"available here; {ALLOWED}")
    return QueryError(_message(exc))


def _message(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__
