"""Where `posevit predict` writes its rows: CSV (stdout or a file), JSON Lines or Parquet, chosen by suffix.

CSV and Parquet are flat (path, label_1, probability_1, ..., label_k, probability_k, error);
JSON Lines nests the top k like the HTTP API's `predictions`. A file is written to
`<name>.partial` as rows arrive and renamed when the run completes, so an interrupted run never
leaves a file that looks finished.
"""

from __future__ import annotations

import csv
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


class CsvWriter:
    def __init__(self, stream: IO[str], top_k: int) -> None:
        self.stream, self.top_k = stream, top_k
        self.writer = csv.DictWriter(stream, fieldnames=flat_columns(top_k), lineterminator="\n")
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
        for row in rows:
            predictions = [{"label": label, "probability": probability} for label, probability in row.top]
            self.stream.write(json.dumps({"path": row.path, "predictions": predictions, "error": row.error}) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.close()


class ParquetWriter:
    def __init__(self, path: Path, top_k: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.top_k, self.pa = top_k, pa
        fields = [pa.field("path", pa.string())]
        for rank in range(1, top_k + 1):
            fields += [pa.field(f"label_{rank}", pa.string()), pa.field(f"probability_{rank}", pa.float32())]
        self.schema = pa.schema([*fields, pa.field("error", pa.string())])
        self.writer = pq.ParquetWriter(path, self.schema)

    def write(self, rows: list[Row]) -> None:
        records = [flat_record(row, self.top_k) for row in rows]
        self.writer.write_table(self.pa.Table.from_pylist(records, schema=self.schema))

    def close(self) -> None:
        self.writer.close()


def check_output(output: Path | None) -> None:
    """Before any work: the suffix names a format and the folder exists."""
    if output is None:
        return
    if output.suffix.lower() not in FORMATS:
        raise ConfigError(f"--output {output}: the name must end in one of {', '.join(FORMATS)} (it picks the format)")
    if not output.parent.is_dir():
        raise ConfigError(f"--output {output}: the folder {output.parent} does not exist")


def partial_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def open_writer(output: Path | None, top_k: int) -> RowWriter:
    """A writer for `output` (CSV on stdout when None); files go to `partial_path(output)` until `finish`."""
    if output is None:
        return CsvWriter(sys.stdout, top_k)
    partial = partial_path(output)
    kind = FORMATS[output.suffix.lower()]
    if kind == "parquet":
        return ParquetWriter(partial, top_k)
    stream = partial.open("w", encoding="utf-8", newline="")
    return CsvWriter(stream, top_k) if kind == "csv" else JsonLinesWriter(stream)


def finish(output: Path | None) -> None:
    if output is not None:
        partial_path(output).replace(output)
