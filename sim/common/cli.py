"""Command-line plumbing shared by every entry point: user mistakes (UserError, Hydra config errors) become one line on stderr and exit 2."""
from __future__ import annotations

import functools
import sys
from typing import Callable

from sim.common.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _hydra_config_error_types() -> tuple[type[BaseException], ...]:
    from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    return (ConfigCompositionException, MissingConfigException, HydraException, OmegaConfBaseException)


def one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    # Hydra wraps the real problem ("Key 'x' not in 'Config'") in a generic composition message.
    if cause is not None and str(cause) and str(cause) not in msg:
        msg = f"{msg}: {' '.join(str(cause).split())}"
    return msg


def exit_on_user_error(main: Callable[..., int | None]) -> Callable[..., int | None]:
    """Decorator for console entry points: UserError and config errors -> 'error: ...' and exit code 2;
    Ctrl-C -> one line and exit code 130."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            sys.exit(2)
        except _hydra_config_error_types() as exc:
            print(f"error: invalid configuration: {one_line(exc)}", file=sys.stderr)
            sys.exit(2)
        except FileNotFoundError as exc:
            print(f"error: file not found: {exc.filename}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            # Ctrl-C is the user's choice, not a crash: one line, the shell's conventional 128 + SIGINT.
            print("error: interrupted (Ctrl-C); outputs of an unfinished run are marked incomplete",
                  file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper
