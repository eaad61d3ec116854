"""Read-only DuckDB SQL over a labelled dataset (local path or fsspec URL such as gs://).

Views: clips, labels, samples (one row per teacher sample), waypoints (one row per predicted
waypoint), quarantine. Only SELECT (and EXPLAIN) statements run; the connection can read
nothing outside the dataset and cannot write files or change state.

examples:
  coclabel query out/demo "SELECT vehicle_id, count(*) FROM labels GROUP BY ALL"
  coclabel query out/demo "SELECT * FROM samples LIMIT 5" --format json
  coclabel query gs://bucket/dataset "SELECT reason, count(*) FROM quarantine GROUP BY 1" --format csv
  coclabel query out/demo --examples
"""

import argparse
import sys

ALLOWED = ("SELECT", "EXPLAIN")


class QueryRefused(ValueError):
    """A statement that is not a read-only query."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset root written by `coclabel label` (path or fsspec URL)")
    parser.add_argument("sql", nargs="?", help="one SELECT statement over the views")
    parser.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table",
                        help="output format (default table; parquet needs --out)")
    parser.add_argument("--out", help="write the result to this file instead of standard output")
    parser.add_argument("--examples", action="store_true", help="print and run the worked example queries")
    parser.add_argument("--limit", type=int, default=50, help="rows shown by --format table (default 50)")


def check_read_only(con, sql: str) -> None:
    """Raise QueryRefused unless `sql` is exactly one SELECT/EXPLAIN statement."""
    try:
        statements = con.extract_statements(sql)
    except Exception as exc:
        raise QueryRefused(f"cannot parse the query: {exc}") from None
    if len(statements) != 1:
        raise QueryRefused(f"give exactly one statement (got {len(statements)})")
    kind = statements[0].type.name
    if kind not in ALLOWED:
        raise QueryRefused(f"{kind} statements are refused: `coclabel query` is read-only (only SELECT runs)")


def run_query(con, sql: str):
    """The result of a read-only query as a pyarrow Table."""
    check_read_only(con, sql)
    return con.sql(sql).to_arrow_table()


def write_result(table, fmt: str, out: str | None, limit: int) -> None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if fmt == "parquet":
        if not out:
            raise SystemExit("--format parquet needs --out FILE")
        pq.write_table(table, out, compression="zstd")
        print(f"wrote {table.num_rows} rows to {out}", file=sys.stderr)
        return
    stream = open(out, "w", newline="") if out else sys.stdout
    try:
        if fmt == "csv":
            import io

            buf = io.BytesIO()
            pacsv.write_csv(_printable(table), buf)
            stream.write(buf.getvalue().decode())
        elif fmt == "json":
            import json

            for row in _printable(table).to_pylist():
                stream.write(json.dumps(row, default=str) + "\n")
        else:
            _print_table(table, limit, stream)
    finally:
        if out:
            stream.close()


def _printable(table):
    """Binary columns (images) are shown by size, not dumped."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, field in enumerate(table.schema):
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            table = table.set_column(i, field.name, pc.binary_length(table.column(i)))
        elif pa.types.is_list(field.type) and pa.types.is_binary(field.type.value_type):
            table = table.set_column(i, field.name, pc.list_value_length(table.column(i)))
    return table


def _print_table(table, limit: int, stream) -> None:
    from rich.console import Console
    from rich.table import Table

    view = Table(show_lines=False)
    for name in table.column_names:
        view.add_column(name, overflow="fold")
    for row in _printable(table.slice(0, limit)).to_pylist():
        view.add_row(*(_cell(v) for v in row.values()))
    console = Console(file=stream)
    console.print(view)
    shown = min(limit, table.num_rows)
    console.print(f"{table.num_rows} rows" + (f" (first {shown} shown)" if shown < table.num_rows else ""))


def _cell(value) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= 120 else text[:117] + "..."


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.query_examples import EXAMPLES
    from schemas.views import open_dataset

    con = open_dataset(args.dataset)
    if args.examples:
        for example in EXAMPLES:
            print(f"\n-- {example.title}\n{example.sql.strip()}")
            write_result(run_query(con, example.sql), "table", None, args.limit)
        return 0
    if not args.sql:
        raise SystemExit("give a SQL query, or --examples")
    try:
        table = run_query(con, args.sql)
    except QueryRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    write_result(table, args.format, args.out, args.limit)
    return 0
