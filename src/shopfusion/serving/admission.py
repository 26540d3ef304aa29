"""Graded load shedding: refuse a *fraction* of new requests that grows while requests queue too
long, instead of all of them or none.

:class:`DelayShedder` is a PIE-style controller (Pan et al., "PIE: a lightweight control scheme
to address the bufferbloat problem", RFC 8033) for request admission. It is fed samples of the
queueing delay — how long a request that arrives now waits before it is looked at — and keeps a
drop probability ``p``:

    dp = (alpha * (delay - target) * dt + beta * (delay - previous_delay)) / target

The integral term raises ``p`` as long as the delay stays above ``target`` and lowers it while the
delay is below, so in steady overload the queueing delay settles near ``target`` whatever the
excess is, and exactly the excess is refused: goodput stays at what the server sustains. The
proportional term reacts to a delay that is still growing. An all-or-nothing threshold instead
refuses everything while the delay is high, empties the queue, admits everything again, and
oscillates; under a closed-loop load it refused 7 of 8 requests (``RESULTS.md``, session 2).

The same controller guards two queues (:mod:`shopfusion.serving.guard`): the event loop's, whose
delay is the loop lag (cache hits saturating the CPU queue there, unseen by any in-flight count),
and the model's, whose delay is how long a cache miss waited for a scoring thread
(:mod:`shopfusion.serving.gate`). Time and randomness are injected, so tests drive it with a fake
clock and known draws.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class DelayShedder:
    """Refuse new work with probability :attr:`p`, steered by queueing-delay samples.

    ``target_s`` 0 disables it (``p`` stays 0). ``max_p`` keeps a trickle of requests admitted
    even in deep overload, so the delay samples keep describing admitted work."""

    def __init__(
        self,
        target_s: float,
        *,
        alpha: float = 8.0,
        beta: float = 0.2,
        max_p: float = 0.95,
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        if target_s < 0 or not 0 <= max_p <= 1:
            raise ValueError("target_s must be at least 0 and max_p within [0, 1]")
        self.target_s, self.alpha, self.beta, self.max_p = target_s, alpha, beta, max_p
        self.clock, self.draw = clock, draw
        self.p = 0.0
        self.delay_s = 0.0  # the last sample
        self._last: float | None = None  # when the last sample came

    @property
    def enabled(self) -> bool:
        return self.target_s > 0

    def observe(self, delay_s: float) -> None:
        """Take one queueing-delay sample and update :attr:`p`."""
        now = self.clock()
        if not self.enabled:
            self.delay_s, self._last = delay_s, now
            return
        # The first sample, and a gap of seconds (no traffic: nobody sampled), count as one tick.
        dt = 0.01 if self._last is None else min(max(now - self._last, 0.0), 0.1)
        integral = self.alpha * (delay_s - self.target_s) * dt
        proportional = self.beta * (delay_s - self.delay_s)
        self.p = min(self.max_p, max(0.0, self.p + (integral + proportional) / self.target_s))
        self.delay_s, self._last = delay_s, now

    def admit(self) -> bool:
        """Whether to take a new request now (``False``: refuse it, cheaply)."""
        return self.p <= 0.0 or self.draw() >= self.p
