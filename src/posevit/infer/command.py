"""Classify image files, folders and S3 prefixes from the command line (`posevit predict`).

    posevit predict photos/                          every image under photos/, CSV on stdout
    posevit predict 'shoots/**/*.jpg' -o preds.parquet
    posevit predict s3://bucket/shoots/ --backend onnx-int8 -o preds.jsonl
    posevit predict a.jpg b.png --top-k 3 -o preds.csv

The model is found as `posevit serve` finds it (--model auto | s3://B/P/N@version | s3://B/P/N:latest |
s3://B/P/N:ALIAS | registry[:version|:ALIAS] | dvc:<rev> | <folder>), and both commands share their
settings (flags, POSEVIT_<KEY> variables). Files are decoded in a pool of threads ahead of batched
forward passes (bf16 where the hardware has it, or an ONNX backend: the serving install, without torch,
predicts too). Every input gets one row: its top-k labels and probabilities, or why it could not be read;
unreadable files never stop the run.

Many machines: `--shard I/N` keeps the inputs whose path hashes to I modulo N, the same split in every
task however the inputs were listed: SLURM arrays `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`
(with --array=0-(N-1)), Kubernetes indexed jobs `--shard $JOB_COMPLETION_INDEX/<completions>`, each with
its own --output. `--resume` after a killed run (or with new inputs) skips what the output holds.

Exit codes: 0 when at least one image was classified, 1 when none was, 2 for a bad flag or model.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from posevit.core.config import PredictConfig
from posevit.core.entrypoint import CommandParser, fail, run_command, setup_logging
from posevit.core.errors import ConfigError
from posevit.core.settings import add_setting_flags, load_settings

if TYPE_CHECKING:
    from posevit.infer.folders import Row

log = logging.getLogger("posevit.predict")


def parse_args(argv: list[str] | None) -> tuple[list[str], bool, PredictConfig]:
    """(paths, quiet, settings); a bad flag or value stops here through `fail`."""
    parser = CommandParser(
        prog="posevit predict",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="image files, folders (recursive), quoted globs, s3://"
    )
    add_setting_flags(parser, PredictConfig, PredictConfig.section, short={"output": "-o"})
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_intermixed_args(argv)  # paths may follow flags: `predict -o x.csv a/ b/`
    try:
        return args.paths, args.quiet, load_settings(PredictConfig, PredictConfig.section, vars(args))
    except ConfigError as exc:
        fail(str(exc))


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    paths, quiet, settings = parse_args(argv)
    return run_command(lambda: predict(paths, settings, quiet))


def predict(paths: list[str], settings: PredictConfig, quiet: bool = False) -> int:
    from posevit.infer.inputs import S3Objects, expand_inputs, select_shard
    from posevit.infer.loading import open_model
    from posevit.infer.outputs import check_output, kept_rows

    output = settings.output
    check_output(output, settings.resume)
    s3 = S3Objects()
    expanded = expand_inputs(paths, s3)
    if not expanded.inputs:
        raise ConfigError(f"no image files in {' '.join(paths)} (skipped {expanded.skipped} other files)")
    inputs = select_shard(expanded.inputs, settings.shard)
    served, predictor = open_model(settings)
    kept = kept_rows(output, settings.top_k) if settings.resume and output else []
    answers = min(settings.top_k, len(predictor.labels))
    if any(len(row.top) != answers for row in kept if row.error is None):
        raise ConfigError(
            f"--resume: {output} holds rows of another --top-k than {settings.top_k}: resume with that one"
        )
    done = {row.path for row in kept}
    todo = [item for item in inputs if item.path not in done]
    log.info(
        "%d input(s)%s%s%s; model %s version %s from %s, %s on %s",
        len(inputs),
        f" in shard {settings.shard} of {len(expanded.inputs)}" if settings.shard else "",
        f" ({expanded.skipped} non-image file(s) skipped)" if expanded.skipped else "",
        f"; resuming: {len(inputs) - len(todo)} already in {output}" if settings.resume else "",
        predictor.model_name,
        served.version,
        served.source,
        predictor.precision,
        predictor.device,
    )
    from posevit.infer.folders import classify_files

    started = time.perf_counter()
    batches = classify_files(
        todo,
        predictor,
        settings.batch_size,
        settings.top_k,
        workers_of(settings),
        settings.max_pixels,
        s3,
        fast_decode=settings.fast_decode,
    )
    classified, failed = write_rows(batches, len(todo), output, settings, quiet)
    seconds = time.perf_counter() - started
    log.info(
        "classified %d of %d input(s) in %.1f s (%.1f img/s)%s%s",
        classified,
        len(todo),
        seconds,
        classified / seconds if seconds else 0.0,
        f"; {failed} could not be read" if failed else "",
        f"; wrote {output}" if output else "",
    )
    if classified + sum(row.error is None for row in kept) == 0:
        print(f"error: none of the {len(inputs)} input(s) could be classified (see above)", file=sys.stderr)
        return 1
    return 0


def workers_of(settings: PredictConfig) -> int | None:
    return None if settings.workers == "auto" else settings.workers


def write_rows(
    batches: Iterator[list[Row]], total: int, output: Path | None, settings: PredictConfig, quiet: bool
) -> tuple[int, int]:
    """Stream the rows to the output as they come; (classified, unreadable)."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from posevit.infer.outputs import finish, open_writer, partial_path

    classified = failed = 0
    writer = open_writer(output, settings.top_k, append=settings.resume)
    try:
        bar = tqdm(total=total, unit="img", disable=quiet, desc="predict")
        with bar, logging_redirect_tqdm():  # warnings print above the bar, not through it
            for rows in batches:
                writer.write(rows)
                for row in rows:
                    if row.error:
                        failed += 1
                        log.warning("%s: %s", row.path, row.error)
                classified += sum(row.error is None for row in rows)
                bar.update(len(rows))
        writer.close()
    except BaseException:
        writer.close()
        if output is not None:
            log.error("interrupted: the rows so far are in %s (--resume continues it)", partial_path(output))
        raise
    finish(output, settings.top_k)
    return classified, failed


if __name__ == "__main__":
    sys.exit(main())
