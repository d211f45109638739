"""The `mmtune` command line. Exit codes: 0 success, 2 bad input or config (one line), 1 internal error."""

from __future__ import annotations

import atexit
import errno
import gc
import logging
import sys
from collections.abc import Sequence

from mmtune.cli.parser import build_parser
from mmtune.errors import InputError
from mmtune.terminal import configure_output, printable, process_rank

log = logging.getLogger("mmtune")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may come before or after options; argparse alone only takes them in one place.
    args, extra = parser.parse_known_args(argv)
    unknown = [item for item in extra if item.startswith("-") or "=" not in item]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    configure_output(verbose=args.verbose)
    quick_exit()
    try:
        code = args.run(args)
        _release_process_group()
    except InputError as exc:
        _report_error(printable(exc))  # why: messages quote ids and names from data
        return 2
    except OSError as exc:
        if exc.errno not in PATH_ERRORS:
            raise
        _report_error(printable(path_error(exc)))  # a path the system refuses is bad input, not a crash
        return 2
    except RuntimeError as exc:
        # Python 3.11's Path.resolve() reports a loop of symlinks as RuntimeError (3.13: OSError ELOOP).
        if not str(exc).startswith("Symlink loop from "):
            raise
        _report_error(printable(str(exc)))
        return 2
    except KeyboardInterrupt:
        print("mmtune: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


# ----------------------------------------------------------------------------------------------
# Helpers

# What the system says of a path a user gave (too long, a loop of links, a file where a folder should be, no
# permission, a read-only or full disk): one line naming the path. Other OSErrors stay internal errors.
PATH_ERRORS = {errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS,
               errno.ENOSPC, errno.EDQUOT}


def path_error(exc: OSError, limit: int = 120) -> str:
    name = str(exc.filename) if exc.filename is not None else ""
    shown = name if len(name) <= limit else f"{name[:limit]}... ({len(name)} characters)"
    return f"{shown}: {exc.strerror}" if shown else str(exc.strerror or exc)


def _report_error(message: str) -> None:
    """The error as the last line of stderr, on a line of its own: progress bars still drawn are closed
    first (a bar leaves its cursor mid-line), and what was buffered on stdout goes out before it."""
    tqdm_module = sys.modules.get("tqdm")  # only where something used tqdm (transformers, the training loop)
    if tqdm_module is not None:
        for bar in list(getattr(tqdm_module.tqdm, "_instances", ())):
            bar.leave = False
            bar.close()
    sys.stdout.flush()
    sys.stderr.flush()
    rank = process_rank()
    print(f"mmtune: error: {f'[rank {rank}] ' if rank else ''}{message}", file=sys.stderr, flush=True)


def _release_process_group() -> None:
    """Under torchrun / accelerate launch: every rank leaves the process group together at the end."""
    distributed = sys.modules.get("torch.distributed")  # never import torch for commands that did not
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.barrier()
        distributed.destroy_process_group()


def quick_exit() -> None:
    """Let the process end in a fraction of a second instead of seconds: the exit is part of the budget.

    Why: at exit CPython's final garbage collections walk every object torch and transformers created (seconds
    on a busy machine); frozen objects are skipped. Registered before the command imports them, the freeze runs
    after their exit handlers (the latest registered runs first), so trackers and worker pools still close.
    """
    atexit.unregister(gc.freeze)  # once, however often the CLI runs in one process
    atexit.register(gc.freeze)
