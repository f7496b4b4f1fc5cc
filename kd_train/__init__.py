"""kd-train: distil a fine-tuned language model into a tiny in-browser answer scorer."""

import os
import signal
import sys

__version__ = "0.1.0"

# Ctrl+C in the kd-train command is one line and exit 130 at any moment, never a traceback
# (kd_train.cli.main says so once a verb runs). This package is imported first both by the console
# script (kd_train.cli:entry) and by `python -m kd_train.cli`, so its handler is in place before the
# command imports anything heavy. Imported as a library, kd-train leaves SIGINT alone.
_phase = ["starting"]   # "starting": modules import; "running": main() runs a verb; "done": main() returned


def _verb(argv=None) -> str:
    """"kd-train VERB" from the command line, before it is parsed (for messages), else "kd-train"."""
    verb = next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), "")
    return f"kd-train {verb}" if verb.isalpha() and verb.islower() else "kd-train"


def _on_sigint(signum, frame) -> None:
    if _phase[0] == "running":
        raise KeyboardInterrupt   # unwinds, so that every half-written output is removed; main() says so
    if _phase[0] == "done":
        return   # the verb finished (or already said it was interrupted): exit as it would have
    try:         # still importing: nothing was written yet
        sys.stderr.write(f"{_verb()}: interrupted; nothing half-written was left behind\n")
        sys.stderr.flush()
    finally:
        os._exit(130)


def _is_command_line() -> bool:
    if sys.argv and os.path.basename(sys.argv[0]).removesuffix(".exe") == "kd-train":
        return True
    argv = getattr(sys, "orig_argv", [])
    return any(a == "-m" and argv[i + 1:i + 2] in (["kd_train.cli"], ["kd_train"]) for i, a in enumerate(argv))


try:
    if _is_command_line() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
        if hasattr(signal, "pthread_sigmask"):   # POSIX: a parent may hold Ctrl+C back until kd-train has
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})   # taken it over (the tests do)
except (AttributeError, ValueError, OSError):   # no signals here (a non-main thread, an odd platform)
    pass
