"""`hdmap` console script: `hdmap synth`, `hdmap fit-eval`, `hdmap tune`, `hdmap eval`, `hdmap predict`,
`hdmap compare`, `hdmap cache`.

Every error ends the command with one line on stderr and exit code 2; `--debug` shows the traceback."""
from __future__ import annotations

import argparse
import sys

from hdmap.cli.cache import add_cache
from hdmap.cli.compare import add_compare
from hdmap.cli.eval import add_eval
from hdmap.cli.fit_eval import add_fit_eval
from hdmap.cli.predict import add_predict
from hdmap.cli.synth import add_synth
from hdmap.cli.tune import add_tune
from hdmap import termination

ERROR_EXIT = 2
INTERRUPTED_EXIT = 130  # the shell's code for a command ended by Ctrl-C


def repeated_option(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """A one-value option given twice (`--domain A --domain C`: argparse keeps the last without a word), named."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    command = next((token for token in argv if not token.startswith("-")), None)
    if sub is None or command not in sub.choices:
        return None
    actions = sub.choices[command]._option_string_actions
    seen: dict[str, str] = {}
    for token in argv:
        option, _, _ = token.partition("=")
        action = actions.get(option)
        if action is None or isinstance(action, (argparse._AppendAction, argparse._CountAction)):
            continue
        if action.dest in seen:
            return (f"{option} given twice (also as {seen[action.dest]}): give it once (for several values the "
                    f"option says so, e.g. --set is repeatable)")
        seen[action.dest] = option
    return None


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
    add_predict(sub)
    add_compare(sub)
    add_cache(sub)
    args = parser.parse_args(argv)
    twice = repeated_option(parser, sys.argv[1:] if argv is None else argv)
    if twice:
        print(f"hdmap {args.command}: error: {twice}", file=sys.stderr)
        return ERROR_EXIT
    with termination.sigterm_handled():
        try:
            code = args.run(args)
        except KeyboardInterrupt:
            print(f"hdmap {args.command}: interrupted (Ctrl-C); stopped with nothing half-written"
                  + (" (continue the search with --resume)" if args.command == "tune" else ""), file=sys.stderr)
            return INTERRUPTED_EXIT
        except (termination.Terminated, SystemExit):
            if not termination.received():  # a SystemExit of its own (a script's)
                raise
            code = None  # Lightning's SIGTERMException is a SystemExit too
        except Exception as error:  # noqa: BLE001 - the CLI's one place that turns errors into one line
            if termination.received():  # an error while stopping: the SIGTERM is the cause
                code = None
            elif args.debug:
                raise
            else:
                print(f"hdmap {args.command}: error: {one_line(error)} (--debug shows the traceback)",
                      file=sys.stderr)
                return ERROR_EXIT
        terminated = termination.received()
    if terminated:  # during the command, or while Tune or Lightning finished a step
        print(f"hdmap {args.command}: terminated: SIGTERM received; stopped with nothing half-written"
              + (" (continue the search with --resume)" if args.command == "tune" else ""), file=sys.stderr)
        return termination.TERMINATED_EXIT
    return code


if __name__ == "__main__":
    sys.exit(main())
