"""Where `posevit predict` writes its rows: CSV (stdout or a file), JSON Lines or Parquet, chosen by suffix.

CSV and Parquet are flat (path, label_1, probability_1, ..., label_k, probability_k, error);
JSON Lines nests the top k like the HTTP API's `predictions`. A file is written to `<name>.partial`
as rows arrive, a batch at a time, and renamed when the run completes, so an interrupted run never
leaves a file that looks finished. Parquet cannot be appended to, so its `.partial` is a JSON Lines
journal of the same rows, written into Parquet at the end.

Resuming (`--resume`) continues the `.partial` a killed run left (or the finished file, when new inputs
appeared): the complete rows are kept, a torn last line is cut off, their inputs are skipped and the
other rows appended in input order, so the file ends as one uninterrupted run would have written it.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import IO, Any, Protocol

from posevit.core.errors import ConfigError
from posevit.infer.folders import Row

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}


class RowWriter(Protocol):
    def write(self, rows: list[Row]) -> None: ...

    def close(self) -> None: ...


def flat_columns(top_k: int) -> list[str]:
    columns = ["path"]
    for rank in range(1, top_k + 1):
        columns += [f"label_{rank}", f"probability_{rank}"]
    return [*columns, "error"]


def flat_record(row: Row, top_k: int) -> dict[str, Any]:
    record: dict[str, Any] = {"path": row.path}
    for rank in range(1, top_k + 1):
        label, probability = row.top[rank - 1] if rank <= len(row.top) else (None, None)
        record[f"label_{rank}"], record[f"probability_{rank}"] = label, probability
    record["error"] = row.error
    return record


def json_line(row: Row) -> str:
    predictions = [{"label": label, "probability": probability} for label, probability in row.top]
    return json.dumps({"path": row.path, "predictions": predictions, "error": row.error}) + "\n"


def row_of_json(line: str) -> Row:
    record = json.loads(line)
    return Row(record["path"], [(p["label"], p["probability"]) for p in record["predictions"]], record["error"])


class CsvWriter:
    def __init__(self, stream: IO[str], top_k: int, header: bool = True) -> None:
        self.stream, self.top_k = stream, top_k
        self.writer = csv.DictWriter(stream, fieldnames=flat_columns(top_k), lineterminator="\n")
        if header:
            self.writer.writeheader()

    def write(self, rows: list[Row]) -> None:
        self.writer.writerows(flat_record(row, self.top_k) for row in rows)
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not sys.stdout:
            self.stream.close()


class JsonLinesWriter:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, rows: list[Row]) -> None:
        self.stream.write("".join(json_line(row) for row in rows))
        self.stream.flush()

    def close(self) -> None:
        self.stream.close()


def write_parquet(rows: list[Row], path: Path, top_k: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = [pa.field("path", pa.string())]
    for rank in range(1, top_k + 1):
        fields += [pa.field(f"label_{rank}", pa.string()), pa.field(f"probability_{rank}", pa.float32())]
    schema = pa.schema([*fields, pa.field("error", pa.string())])
    pq.write_table(pa.Table.from_pylist([flat_record(row, top_k) for row in rows], schema=schema), path)


def read_parquet_rows(path: Path) -> list[Row]:
    import pyarrow.parquet as pq

    rows = []
    for record in pq.read_table(path).to_pylist():
        ranks = range(1, 1 + sum(key.startswith("label_") for key in record))
        top = [(record[f"label_{r}"], float(record[f"probability_{r}"])) for r in ranks if record[f"label_{r}"]]
        rows.append(Row(record["path"], top, record["error"]))
    return rows


def check_output(output: Path | None, resume: bool = False) -> None:
    """Before any work: the suffix names a format, the folder exists, and Parquet can be written here."""
    if output is None:
        if resume:
            raise ConfigError("--resume continues an output file: add --output FILE.csv|.jsonl|.parquet")
        return
    if output.suffix.lower() not in FORMATS:
        raise ConfigError(f"--output {output}: the name must end in one of {', '.join(FORMATS)} (it picks the format)")
    if not output.parent.is_dir():
        raise ConfigError(f"--output {output}: the folder {output.parent} does not exist")
    if FORMATS[output.suffix.lower()] == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ModuleNotFoundError:
            raise ConfigError(
                f"--output {output}: Parquet needs pyarrow, which this install lacks: `pip install pyarrow`, "
                "or write .csv or .jsonl"
            ) from None


def partial_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def kind_of(output: Path) -> str:
    return FORMATS[output.suffix.lower()]


def complete_text(path: Path) -> str:
    """The file's text up to its last newline; a torn last line (a killed write) is cut off the file too."""
    data = path.read_bytes()
    keep = data[: data.rfind(b"\n") + 1]
    if len(keep) != len(data):
        with path.open("r+b") as handle:
            handle.truncate(len(keep))
    return keep.decode("utf-8")


def kept_rows(output: Path, top_k: int) -> list[Row]:
    """For --resume: make `partial_path(output)` hold every complete row written so far, and return them."""
    partial, kind = partial_path(output), kind_of(output)
    if not partial.exists() and output.exists():  # finished before: continue it with the inputs it lacks
        if kind == "parquet":
            partial.write_text("".join(json_line(row) for row in read_parquet_rows(output)), encoding="utf-8")
            output.unlink()
        else:
            output.replace(partial)
    if not partial.exists():
        return []
    text = complete_text(partial)
    if kind != "csv":
        return [row_of_json(line) for line in text.splitlines() if line.strip()]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if text and reader.fieldnames != flat_columns(top_k):
        written_k = sum(name.startswith("label_") for name in reader.fieldnames or [])
        raise ConfigError(
            f"--resume: {partial} has the columns of --top-k {written_k}, not {top_k}: resume with --top-k {written_k}"
        )
    rows = []
    for record in reader:
        top = [
            (record[f"label_{r}"], float(record[f"probability_{r}"]))
            for r in range(1, top_k + 1)
            if record[f"label_{r}"]
        ]
        rows.append(Row(record["path"], top, record["error"] or None))
    return rows


def open_writer(output: Path | None, top_k: int, append: bool = False) -> RowWriter:
    """A writer for `output` (CSV on stdout when None); files go to `partial_path(output)` until `finish`.
    `append`: continue the partial file that `kept_rows` prepared."""
    if output is None:
        return CsvWriter(sys.stdout, top_k)
    partial = partial_path(output)
    kind = kind_of(output)
    has_rows = append and partial.exists() and partial.stat().st_size > 0
    stream = partial.open("a" if append else "w", encoding="utf-8", newline="")
    return CsvWriter(stream, top_k, header=not has_rows) if kind == "csv" else JsonLinesWriter(stream)


def finish(output: Path | None, top_k: int) -> None:
    """The run completed: the partial file becomes `output` (Parquet: written from the journal)."""
    if output is None:
        return
    partial = partial_path(output)
    if kind_of(output) == "parquet":
        staging = output.with_name(output.name + ".writing")
        text = partial.read_text(encoding="utf-8")
        write_parquet([row_of_json(line) for line in text.splitlines() if line.strip()], staging, top_k)
        staging.replace(output)
        partial.unlink()
    else:
        partial.replace(output)
