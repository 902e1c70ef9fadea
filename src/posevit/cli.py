"""The `posevit` command: what a user runs outside the DVC stages.

posevit serve [--model ...]     the model in a web page and a JSON API (`posevit serve --help`)
posevit predict PATH...         classify files and folders into CSV/JSONL/Parquet (`posevit predict --help`)
posevit registry ACTION ...     the published versions: list, show, diff, promote, rollback, gc
posevit params [override ...]   regenerate params.yaml from conf/ (`make params`)
"""

from __future__ import annotations

import argparse
import sys

from posevit.core.entrypoint import CommandParser


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(
        prog="posevit", description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each command parses its own arguments (and answers its own --help).
    commands.add_parser("serve", help="serve the model: the page, the JSON API, metrics", add_help=False)
    commands.add_parser("predict", help="classify image files and folders into a table", add_help=False)
    commands.add_parser("registry", help="the published versions and their aliases", add_help=False)
    commands.add_parser("params", help="compose conf/ (+ overrides) into params.yaml", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "serve":
        from posevit.serve.app import main as serve

        return serve(rest)
    if args.command == "predict":
        from posevit.infer.command import main as predict

        return predict(rest)
    if args.command == "registry":
        from posevit.publish.command import main as registry

        return registry(rest)
    from posevit.core.config import params_command

    return params_command(rest)


if __name__ == "__main__":
    sys.exit(main())
