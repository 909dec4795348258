"""The `butterfly` command: train, import, splits, distill, export, profile, plan, serve,
worker, infer, demo.

Each feature module registers its own subcommands through `add_cli(subparsers)`, so this
file only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# modules that add subcommands, in help order
_FEATURES = ("training", "onnx_import", "split", "distill", "onnx_export", "serving",
             "experiments")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="butterfly",
        description="Split computing for CNNs: train, profile, plan, serve and run "
                    "networks with a butterfly unit.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _FEATURES:
        try:
            mod = importlib.import_module(f"butterfly.{name}")
        except ImportError as e:  # a feature module missing from this build
            if e.name != f"butterfly.{name}":
                raise
            continue
        mod.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from . import Error, FileError, InvalidArgument, ModelError, Unsupported

    # what the user can fix (a path, an argument, a model file) exits 2, as argparse does
    user_errors = (FileError, InvalidArgument, ModelError, Unsupported)

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except Error as e:
        print(f"butterfly {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2 if isinstance(e, user_errors) else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
