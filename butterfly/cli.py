"""The `butterfly` command: train, import, splits, distill, export, profile, plan, serve,
worker, infer, demo.

Each feature module registers its own subcommands through `add_cli(subparsers)`, so this
file only assembles them.
"""

from __future__ import annotations

import argparse
import os
import sys

from ._C import Error, FileError, InvalidArgument, ModelError, UnsupportedError
from .experiments import commands as experiments_commands
from .network import onnx_export, onnx_import, split
from .serving import commands as serving_commands
from .training import distillation, trainer

# modules that add subcommands, in help order
_FEATURES = (trainer, onnx_import, split, distillation, onnx_export, serving_commands,
             experiments_commands)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="butterfly",
        description="Split computing for CNNs: train, profile, plan, serve and run "
                    "networks with a butterfly unit.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _FEATURES:
        module.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # what the user can fix (a path, an argument, a value, a model file) exits 2, as argparse
    # does; a failure of the run itself (a timeout, a dead pool) exits 1; both in one line
    user_errors = (FileError, InvalidArgument, ModelError, UnsupportedError, ValueError, TypeError)

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (Error, ValueError, TypeError) as e:
        if os.environ.get("BUTTERFLY_TRACEBACK"):
            raise
        print(f"butterfly {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2 if isinstance(e, user_errors) else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
