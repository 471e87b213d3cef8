"""The data lifecycle commands of ``crm`` (docs/contract.md "CLI"): import, backup, restore.

* ``crm import contacts FILE.csv --location CODE [--map COL=FIELD ...] [--dry-run]``
  runs :class:`~crm_domain.services.imports.ContactImportService` as the
  operator: refused rows go to a report file (``FILE.rejected.csv`` unless
  ``--report``), a Rich progress bar shows the rows read, and running the
  same command again after an interruption resumes after the last committed row.
* ``crm db backup PATH`` / ``crm db restore PATH --yes``: :mod:`crm_gateway_sql.backup`.

Registered on the ``crm`` app by :mod:`crm_http_litestar.cli`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, TextIO

import typer
from crm_domain.errors import ValidationError
from crm_domain.importing import ColumnMap, fingerprint
from crm_domain.services.imports import (
    DEFAULT_BATCH_ROWS,
    ContactImportService,
    ImportSummary,
    Rejection,
)
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from crm_http_litestar.cli import (
    CliError,
    _fail,
    _location,
    _operator,
    _run,
    _services,
    _settings,
    app,
    db_app,
)

import_app = typer.Typer(help="Import data from files.", no_args_is_help=True)
app.add_typer(import_app, name="import")
retention_app = typer.Typer(help="Retention of patient data.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")

#: Bytes read to guess the file's CSV dialect.
_SNIFF_BYTES = 64 * 1024
_REPORT_HEADER = ("row", "field", "reason")


def parse_mapping(pairs: Sequence[str]) -> dict[str, str]:
    """``["E-mail=email", "Fax="]`` as ``{"E-mail": "email", "Fax": ""}`` (empty: ignore)."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        column, sep, field = pair.rpartition("=")
        if not sep or not column.strip():
            raise ValidationError("--map", f"{pair!r} is not COLUMN=FIELD")
        mapping[column.strip()] = field.strip()
    return mapping


class CsvSource:
    """A CSV file read in its own dialect: its header and its data rows, streamed."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise CliError(f"{path} is not a file")
        self.path = path
        try:
            with path.open(encoding="utf-8-sig", newline="") as handle:
                sample = handle.read(_SNIFF_BYTES)
        except UnicodeDecodeError:
            raise CliError(f"{path} is not UTF-8 text (save the sheet as CSV UTF-8)") from None
        try:
            self.dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(
                sample, delimiters=",;\t|"
            )
        except csv.Error:
            self.dialect = csv.excel
        header = next(csv.reader(io.StringIO(sample), self.dialect), None)
        if not header:
            raise CliError(f"{path} is empty: the first line must name the columns")
        self.header: tuple[str, ...] = tuple(header)

    def rows(self) -> Iterator[list[str]]:
        """The data rows (blank lines skipped), read as they are consumed."""
        with self.path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, self.dialect)
            try:
                next(reader, None)
                for row in reader:
                    if any(cell.strip() for cell in row):
                        yield row
            except (csv.Error, UnicodeDecodeError) as exc:
                # Batches before this line are committed: the same command resumes.
                raise CliError(f"{self.path} line {reader.line_num}: {exc}") from None

    def count(self) -> int:
        """How many data rows the file holds (one pass, for the progress bar)."""
        return sum(1 for _ in self.rows())

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes, for its fingerprint."""
        with self.path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                yield chunk


class RejectionReport:
    """The report file: one line per refused row (row, field, reason, the row's cells).

    Resuming keeps the lines of rows an earlier run committed and drops the
    rest, which this run writes again.
    """

    def __init__(self, path: Path, header: Sequence[str], *, keep_through: int) -> None:
        self.path = path
        kept: list[list[str]] = []
        if keep_through and path.is_file():
            with path.open(encoding="utf-8", newline="") as old:
                reader = csv.reader(old)
                next(reader, None)
                kept = [line for line in reader if line and int(line[0]) <= keep_through]
        self._handle: TextIO = path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._handle)
        self._writer.writerow([*_REPORT_HEADER, *header])
        self._writer.writerows(kept)
        self.lines = len(kept)

    def write(self, rejections: Sequence[Rejection]) -> None:
        """Append refused rows, durable before their batch commits."""
        for item in rejections:
            self._writer.writerow([item.row, item.field, item.reason, *item.values])
        self._handle.flush()
        self.lines += len(rejections)

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


@import_app.command("contacts")
def import_contacts(
    file: Annotated[Path, typer.Argument(help="CSV file; its first line names the columns.")],
    location: Annotated[str, typer.Option(help="Location code the contacts belong to.")],
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="COLUMN=FIELD: feed a column into a contact field; COLUMN= ignores it.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and report; store nothing.")
    ] = False,
    report: Annotated[
        Path | None, typer.Option(help="Where refused rows go (default FILE.rejected.csv).")
    ] = None,
    batch_rows: Annotated[
        int, typer.Option(help="Rows per committed batch (the resume granularity).")
    ] = DEFAULT_BATCH_ROWS,
) -> None:
    """Import contacts from a CSV file: validated, deduplicated, resumable."""
    settings = _settings()
    report_path = report or file.with_name(f"{file.stem}.rejected.csv")
    console = Console(stderr=True)

    async def body() -> tuple[ImportSummary, int]:
        mapping = parse_mapping(map_ or ())
        source = CsvSource(file)
        columns = ColumnMap.for_header(source.header, mapping)
        async with _services(settings) as services:
            place = await _location(services, location)
            importer = ContactImportService.of(services)
            ctx = _operator(place.id, "import contacts")
            import_id = fingerprint(source.chunks(), tenant_id=place.id, mapping=mapping)
            done = await importer.checkpoint(ctx, import_id)
            sink = RejectionReport(report_path, source.header, keep_through=done)
            try:
                with _progress(console) as bar:
                    task = bar.add_task("import", total=source.count())
                    summary = await importer.run(
                        ctx,
                        source.rows(),
                        columns,
                        import_id=import_id,
                        dry_run=dry_run,
                        batch_rows=batch_rows,
                        rejections=sink,
                        progress=lambda rows: bar.advance(task, rows),
                    )
            finally:
                sink.close()
            return summary, sink.lines

    summary, refused = _run(body)
    if summary.resumed_after and not summary.rows:
        typer.echo(f"nothing to import: {file} was imported at {location} already")
        return
    verb = "would import" if dry_run else "imported"
    resumed = f" (resumed after row {summary.resumed_after})" if summary.resumed_after else ""
    typer.echo(
        f"{verb} {summary.stored} contacts at {location}{resumed}; "
        f"refused {summary.rejected} invalid and {summary.duplicates} duplicate rows "
        f"({refused} listed in {report_path})"
    )


@retention_app.command("purge")
def retention_purge(
    location: Annotated[str, typer.Option(help="Location code.")],
) -> None:
    """Erase the location's contacts past its retention period (never those on legal hold)."""
    from crm_domain.services.lifecycle import LifecycleService, PurgeReport

    settings = _settings()

    async def body() -> PurgeReport:
        async with _services(settings) as services:
            place = await _location(services, location)
            service = LifecycleService.of(services)
            return await service.purge(_operator(place.id, "retention purge"))

    report = _run(body)
    typer.echo(
        f"erased {len(report.erased)} contacts at {location} past {report.retention_days} "
        f"days; {report.held} on legal hold kept"
    )


@db_app.command("backup")
def db_backup(
    path: Annotated[Path, typer.Argument(help="The backup file to write (must not exist).")],
) -> None:
    """Back up CRM_DATABASE_URL: SQLite's online backup API, or pg_dump for PostgreSQL."""
    from crm_gateway_sql.backup import backup

    settings = _settings()

    async def body() -> str:
        return backup(settings.database_url, path)

    typer.echo(_run(body))


@db_app.command("restore")
def db_restore(
    path: Annotated[Path, typer.Argument(help="A file written by `crm db backup`.")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm: every row of the database is replaced.")
    ] = False,
) -> None:
    """Replace CRM_DATABASE_URL's data with a backup (then run `crm audit verify`)."""
    from crm_gateway_sql.backup import restore

    if not yes:
        raise _fail("restore replaces every row of the database; pass --yes to confirm")
    settings = _settings()

    async def body() -> str:
        return restore(settings.database_url, path)

    typer.echo(_run(body))


__all__ = ["CsvSource", "RejectionReport", "import_app", "parse_mapping", "retention_app"]
