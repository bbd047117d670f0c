"""Shared command-line plumbing: one-line errors with exit code 2, never a traceback for bad input."""
from __future__ import annotations

import argparse
import atexit
import difflib
import os
import re
import sys
import threading
from typing import Callable

from jaxcausal.errors import InputError

EXIT_BAD_INPUT = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2, and flags are never abbreviated."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # `--epoch 5` is a typo to report, not a prefix of --epochs
        super().__init__(*args, **kwargs)
        # Python < 3.13 reads `--lr -1e-3` as a flag named -1e-3 ("expected one argument"), which
        # hides the real problem; accept scientific notation so the value check names it instead.
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

    def error(self, message: str):
        hint = ""
        if message.startswith("unrecognized arguments:"):
            flags = [a.split("=")[0] for a in message.split(":", 1)[1].split() if a.startswith("--")]
            known = list(self._option_string_actions)
            close = [m for f in flags for m in difflib.get_close_matches(f, known, n=1, cutoff=0.75)]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
        print(f"{self.prog}: error: {message}{hint} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    try:
        return main(argv)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:
        if e.filename is None:  # not about a path the user gave: a real fault, keep the traceback
            raise
        # A path the user named cannot be created, read or written (--out under a read-only or
        # missing mount, a full disk): say which path and why, in one line.
        print(f"error: {e.filename}: {e.strerror or e}; check the path and its permissions", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def exit_after_run(code: int) -> None:
    """End the process with `code`, skipping only the interpreter's teardown of jax and XLA objects
    (~0.3 s): the exit handlers run and the streams are flushed first. While a non-daemon thread is
    still alive, the normal exit, which waits for it, is taken instead."""
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()  # logging, jax.distributed, orbax and tempfile clean-ups, as at a normal exit
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing left to say to it
            pass
    os._exit(code)
