"""`hdmap` console script: `hdmap synth`, `hdmap fit-eval`, `hdmap tune`, `hdmap eval`, `hdmap compare`.

Every error ends the command with one line on stderr and exit code 2; `--debug` shows the traceback."""
from __future__ import annotations

import argparse
import sys

from hdmap.cli.compare import add_compare
from hdmap.cli.eval import add_eval
from hdmap.cli.fit_eval import add_fit_eval
from hdmap.cli.synth import add_synth
from hdmap.cli.tune import add_tune

ERROR_EXIT = 2


def one_line(error: BaseException) -> str:
    """`Type: first line of the message`, the message intact (a KeyError's message is its key, unquoted)."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    message = text.strip().splitlines()
    return f"{type(error).__name__}: {message[0] if message else repr(error)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hdmap", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    add_synth(sub)
    add_fit_eval(sub)
    add_tune(sub)
    add_eval(sub)
    add_compare(sub)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except Exception as error:  # noqa: BLE001 - the CLI's one place that turns errors into one line
        if args.debug:
            raise
        print(f"hdmap {args.command}: error: {one_line(error)} (--debug shows the traceback)", file=sys.stderr)
        return ERROR_EXIT


if __name__ == "__main__":
    sys.exit(main())
