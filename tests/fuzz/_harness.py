"""One rule for every fuzzed input: a clean P2PDistError or success, quickly.

``clean(parser, fn)`` runs *fn*; anything but success or a P2PDistError subclass with a
message fails the test (Hypothesis then shrinks it to the smallest input). Each call is
timed; the slowest per parser is reported at the end of the run (see conftest.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from hypothesis import HealthCheck, settings

from p2pdist.errors import P2PDistError

EXAMPLES = 1000
LIMIT = 10.0  # seconds: the promise is "no hang over 10 s"

# derandomize: CI runs the same 1,000 inputs every time. Seeds are real objects of a few
# KiB and the mutants are drawn from them, so generating one can be slow and large:
# those two health checks measure generation, not the parser under test.
FUZZ = settings(
    max_examples=EXAMPLES, deadline=timedelta(seconds=LIMIT), derandomize=True,
    database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Tally:
    examples: int = 0
    accepted: int = 0
    worst: float = 0.0
    errors: dict[str, int] | None = None


TALLY: dict[str, Tally] = {}


def clean(parser: str, fn: Callable[[], object]) -> P2PDistError | None:
    """Run *fn*; return the P2PDistError it raised (None on success), fail on anything else."""
    t = TALLY.setdefault(parser, Tally(errors={}))
    start = time.monotonic()
    err: P2PDistError | None = None
    try:
        fn()
    except P2PDistError as e:
        err = e
    finally:
        took = time.monotonic() - start
        t.examples += 1
        t.worst = max(t.worst, took)
    if err is None:
        t.accepted += 1
    else:
        assert isinstance(err.message, str) and err.message.strip(), repr(err)
        assert "Traceback" not in err.message
        assert t.errors is not None
        name = type(err).__name__
        t.errors[name] = t.errors.get(name, 0) + 1
    assert took < LIMIT, f"{parser} took {took:.1f} s"
    return err
