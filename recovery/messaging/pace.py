"""Each sender number's rate (``SMS_SENDER_RATE`` texts per second), shared by every
worker through Redis.

Two Redis scripts, each one atomic step on Redis's own clock (so workers on machines
whose clocks differ share one timeline):

* ``plan`` gives each text a slot on its sender's timeline, one interval after the
  sender's last slot, so a thousand texts from one number are spread out instead of
  all trying at once. A send job sends the texts whose slot is due now and asks for a
  job at the slot of each of the others (the workers are never tied up waiting). A text
  keeps its slot: planning it again (its job at the slot, a retry) returns the same one.
* ``turn`` is the rule itself, checked right before each call to the provider: a sender
  may start a send only one interval after its previous send started. A text that comes
  late to its slot, or a retry, waits here for its turn, so sends from one number are
  never closer than the interval, whatever the slots said.

With Redis unreachable the limit is skipped (with a warning) rather than stopping every
text: the provider queues what exceeds its own rate, and the jobs themselves come from
Redis, so this only happens to a send already under way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask
from redis import Redis
from redis.exceptions import RedisError

from recovery.messaging.gateway import TemporarySendError
from recovery.redis_client import redis_for

log = logging.getLogger(__name__)

# KEYS: the sender's timeline, one key per text (its slot). ARGV: interval (ms), then one
# text per key after the first. Returns each text's slot as ms from now (<= 0: due).
_PLAN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local out = {}
for i = 2, #KEYS do
  local slot = redis.call('GET', KEYS[i])
  if slot then
    slot = tonumber(slot)
  else
    slot = math.max(last + interval, now)
    last = slot
    redis.call('SET', KEYS[i], slot, 'PX', math.max(slot - now, 0) + 600000)
  end
  out[#out + 1] = slot - now
end
redis.call('SET', KEYS[1], last, 'PX', math.max(last - now, 0) + 60000)
return out
"""

# KEYS: the sender's last send. ARGV: interval (ms). Returns 0 when this send may start
# now (and records it), else the ms to wait.
_TURN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if now < last + interval then
  return last + interval - now
end
redis.call('SET', KEYS[1], now, 'PX', interval + 1000)
return 0
"""


# A turn this close is waited for in the sending thread (a text that came to its slot a
# little late, after its number's previous one); a later one is not: the text is put
# back and sent in the second of its turn, so a thread never idles for long.
MAX_TURN_WAIT_MS = 1000


class NotYourTurn(TemporarySendError):
    """The sender number sent too recently: this text goes ``wait`` seconds later. Nothing
    was sent, so the text is simply queued again."""

    def __init__(self, sender: str, wait: float) -> None:
        super().__init__(f"{sender} sent too recently: its turn is in {wait:.2f} s")
        self.wait = wait


@dataclass
class SenderPace:
    redis: Redis
    per_second: float

    def __post_init__(self) -> None:
        self.interval_ms = 1000.0 / self.per_second
        self._plan = self.redis.register_script(_PLAN)
        self._turn = self.redis.register_script(_TURN)

    def plan(self, texts: list[tuple[int, str]]) -> dict[int, float]:
        """Seconds from now until the slot of each (message id, sender) text (<= 0: due
        now); one round trip per sender."""
        by_sender: dict[str, list[int]] = {}
        for message_id, sender in texts:
            by_sender.setdefault(sender, []).append(message_id)
        try:
            pipe = self.redis.pipeline(transaction=False)
            for sender, ids in by_sender.items():
                keys = [f"sms-pace:{sender}:plan", *(f"sms-pace:slot:{i}" for i in ids)]
                self._plan(keys=keys, args=[self.interval_ms], client=pipe)
            answers = pipe.execute()
        except RedisError as exc:
            log.warning("sender rate unavailable (%s): texts are sent now", exc)
            return {message_id: 0.0 for message_id, _ in texts}
        slots = {}
        for ids, waits in zip(by_sender.values(), answers, strict=True):
            slots.update({i: int(w) / 1000 for i, w in zip(ids, waits, strict=True)})
        return slots

    def wait_turn(self, sender: str) -> None:
        """Return when ``sender`` may start a send (the rate itself), after a short wait
        if need be; a longer one raises ``NotYourTurn`` (the caller sends it later)."""
        while True:
            try:
                wait_ms = int(self._turn(keys=[f"sms-pace:{sender}:turn"], args=[self.interval_ms]))
            except RedisError as exc:
                log.warning("sender rate unavailable (%s): sending without it", exc)
                return
            if wait_ms <= 0:
                return
            if wait_ms > MAX_TURN_WAIT_MS:
                raise NotYourTurn(sender, wait_ms / 1000)
            time.sleep(wait_ms / 1000)


def pace_for(app: Flask) -> SenderPace | None:
    """The app's sender pace; None when the limit is off or there is no Redis (the
    embedded mode sends to the sandbox, where there is no provider to overrun)."""
    rate = app.config.get("SMS_SENDER_RATE") or 0
    redis = redis_for(app)
    if rate <= 0 or redis is None:
        return None
    pace = app.extensions.get("recovery.pace")
    if pace is None or pace.per_second != rate:
        pace = app.extensions["recovery.pace"] = SenderPace(redis, rate)
    return pace


def next_turn_left(app: Flask, now: datetime) -> datetime | None:
    """When a text that can wait should go so that its sender's next turn is left to one
    that cannot: one interval from ``now``; None (at once) when there is no limit.

    A cancellation's notice to the customer who cancelled and the first offer of the
    slot it opened leave from the same number moments apart; at one text a second the
    later of the two waits a second. The offer goes first: its time to answer runs."""
    pace = pace_for(app)
    if pace is None:  # no limit: nothing waits its turn
        return None
    return now + timedelta(milliseconds=pace.interval_ms)


class PacedSender:
    """An SMS sender whose sends wait for their sender number's turn (lookups do not)."""

    def __init__(self, sender, pace: SenderPace) -> None:
        self.inner = sender
        self.pace = pace
        self.name = sender.name

    def send(self, to: str, from_: str, body: str):
        self.pace.wait_turn(from_)
        return self.inner.send(to, from_, body)

    def find(self, to: str, from_: str, body: str, since):
        return self.inner.find(to, from_, body, since)
