"""Classify image files and folders from the command line (`posevit predict`).

    posevit predict photos/                          every image under photos/, CSV on stdout
    posevit predict 'shoots/**/*.jpg' -o preds.parquet
    posevit predict a.jpg b.png --top-k 3 --backend onnx-int8 -o preds.jsonl

The model is found as `posevit serve` finds it (--model auto|registry[:version]|dvc:<rev>|<folder>).
Files are decoded in DataLoader workers and classified in batches (bf16 where the hardware has
it, or an ONNX backend). Every input gets one row: its top-k labels and probabilities, or why it
could not be read; unreadable files never stop the run.

Exit codes: 0 when at least one image was classified, 1 when none was, 2 for a bad flag or model.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import get_args

from posevit.core.entrypoint import setup_logging
from posevit.core.errors import ConfigError, PosevitError

log = logging.getLogger("posevit.predict")


def _whole_number(text: str, minimum: int, not_a_number: str, too_small: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} {not_a_number}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{value} {too_small}")
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, 1, "is not a whole number", "must be at least 1")


def worker_count(text: str) -> int | None:
    if text == "auto":
        return None
    return _whole_number(
        text, 0, "is neither a whole number nor 'auto'", "must be 0 (decode in the main process) or more"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from posevit.core.config import Backend, Precision

    parser = argparse.ArgumentParser(
        prog="posevit predict",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (recursive) or quoted globs")
    parser.add_argument("--model", default="auto", help="auto | registry[:version] | dvc:<rev> | <bundle folder>")
    parser.add_argument(
        "-o", "--output", type=Path, help="FILE.csv, FILE.jsonl or FILE.parquet (default: CSV on stdout)"
    )
    parser.add_argument("--top-k", type=positive_int, default=5, metavar="K", help="labels per image (default 5)")
    parser.add_argument("--batch-size", type=positive_int, default=32, metavar="N", help="images per forward pass")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    parser.add_argument("--backend", choices=get_args(Backend), default="torch", help="default torch")
    parser.add_argument(
        "--precision",
        choices=get_args(Precision),
        default="auto",
        help="backend torch: auto (bf16 where native, default), bf16, or fp32 (each answer exact whatever the batch)",
    )
    parser.add_argument(
        "--workers", type=worker_count, default=None, metavar="N|auto", help="decoding processes (default: one a core)"
    )
    parser.add_argument(
        "--max-pixels", type=positive_int, default=40_000_000, metavar="N", help="largest image, read from its header"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_args(argv)
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        from posevit.infer.folders import classify_files, expand_inputs
    except ModuleNotFoundError as exc:  # the serving image's install (requirements/serve.txt) has no torch
        print(
            f"error: posevit predict decodes in parallel with PyTorch's DataLoader, and {exc.name} is not installed "
            "here (requirements/serve.txt serves without it): install the full stack (`pip install -r "
            "requirements/lock.txt`), or post the files to a server's /v1/predict/batch",
            file=sys.stderr,
        )
        return 2
    from posevit.infer.backends import check_device, load_predictor
    from posevit.infer.model_source import resolve
    from posevit.infer.outputs import check_output, finish, open_writer, partial_path

    try:
        check_output(args.output)
        check_device(args.device, args.backend)
        expanded = expand_inputs(args.paths)
        if not expanded.inputs:
            raise ConfigError(f"no image files in {' '.join(args.paths)} (skipped {expanded.skipped} other files)")
        served = resolve(args.model, args.backend)
        predictor = load_predictor(served, args.device, args.backend, args.precision)
    except PosevitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info(
        "%d input(s)%s; model %s version %s from %s, %s on %s",
        len(expanded.inputs),
        f" ({expanded.skipped} non-image file(s) skipped)" if expanded.skipped else "",
        predictor.model_name,
        served.version,
        served.source,
        predictor.precision,
        predictor.device,
    )
    classified = failed = 0
    started = time.perf_counter()
    writer = open_writer(args.output, args.top_k)
    try:
        bar = tqdm(total=len(expanded.inputs), unit="img", disable=args.quiet, desc="predict")
        with bar, logging_redirect_tqdm():  # warnings print above the bar, not through it
            for rows in classify_files(
                expanded.inputs, predictor, args.batch_size, args.top_k, args.workers, args.max_pixels
            ):
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
        if args.output is not None:
            log.error("interrupted: the rows so far are in %s", partial_path(args.output))
        raise
    finish(args.output)
    seconds = time.perf_counter() - started
    log.info(
        "classified %d of %d input(s) in %.1f s (%.1f img/s)%s%s",
        classified,
        len(expanded.inputs),
        seconds,
        classified / seconds if seconds else 0.0,
        f"; {failed} could not be read" if failed else "",
        f"; wrote {args.output}" if args.output else "",
    )
    if classified == 0:
        print(f"error: none of the {len(expanded.inputs)} input(s) could be classified (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
