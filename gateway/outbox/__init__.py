"""The transactional outbox, storage side.

Work for the world outside the database (delivery to an agency, national portal sync, a payment request…) is written
as an :class:`~gateway.store.models.OutboxMessage` in the same unit of work as the change that caused it, so the two
land together or not at all. Workers (:mod:`gateway.workers`) then claim due messages, deliver them, and record the
outcome. Every function here is synchronous and runs inside the caller's session (``db.unit_of_work()`` or
``db.run``); none commits.

Life of a message::

    pending ──claim──► in_flight ──complete──► done
       ▲                  │ fail (retryable, attempts left): next_attempt_at = now + backoff
       └──────────────────┤ release (graceful shutdown): attempts not counted
                          │ lease expired: claimable again by any worker (a crashed worker's claim is retaken)
                          └ fail (permanent, or attempts used up) ──► dead ──redrive──► pending

**Claims.** A claim sets ``state = in_flight``, ``claimed_by``, ``lease_until = now + lease`` and counts one attempt.
Only the claim's holder may ``complete``/``fail``/``renew`` it: the UPDATE's WHERE checks ``state``, ``claimed_by``
and the attempt number the claim was made with (a fencing token: every claim increments it), so a worker whose lease
expired and whose message was retaken cannot overwrite the newer claim, even when both workers share an id.

- PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED``. Concurrent claimers skip each other's locked rows, and a row that
  another claim committed meanwhile is re-checked against the state/lease conditions (which sit on the locked row
  itself), so two processes never claim the same row.
- SQLite (one writer at a time): the claim transaction starts with ``BEGIN IMMEDIATE``, taking the database's write
  lock before it reads, so claims by threads or processes are serialised and each sees the previous one's result.

**Ordering and dead letters.** Messages sharing an ``ordering_key`` (the dossier code) are delivered one at a time in
``id`` order: a message is claimable only when no earlier message with the same key is ``pending``, ``in_flight`` or
``dead``. A dead letter therefore holds back the *later messages of its own dossier* (delivering "supplement" or
"withdraw" to an agency that never received the dossier would be wrong, and would make the agency's state diverge)
until an operator redrives it; it never holds back anything else: the same agency's other dossiers, and every other
agency, keep flowing. Messages without an ordering key are independent.

**Per-target limits.** ``claim(max_in_flight_per_target=…)`` counts the messages of each target (the agency) that are
in flight under a valid lease, across all workers, and claims only up to the limit; a limit of 0 (an open circuit
breaker) claims nothing for that target. On SQLite the count is exact (claims are serialised); on PostgreSQL two
claims racing may together exceed it by a little, each worker's own semaphore still bounding its share.

**Retries.** A retryable failure schedules ``next_attempt_at`` with exponential backoff and jitter computed by
tenacity's ``wait_exponential_jitter``; the retry *is* the row's next attempt time, never a sleeping loop.
"""

from gateway.outbox.claims import claim
from gateway.outbox.records import (
    add,
    complete,
    complete_many,
    enqueue,
    fail,
    find_by_key,
    get,
    list_messages,
    redrive,
    release,
    renew,
    stats,
)
from gateway.outbox.retry import RetryPolicy
from gateway.outbox.states import ANY_TARGET, DEAD, DONE, IN_FLIGHT, MAX_ERROR_LENGTH, PENDING, STATES, message_key

__all__ = [
    "ANY_TARGET",
    "DEAD",
    "DONE",
    "IN_FLIGHT",
    "MAX_ERROR_LENGTH",
    "PENDING",
    "STATES",
    "RetryPolicy",
    "add",
    "claim",
    "complete",
    "complete_many",
    "enqueue",
    "fail",
    "find_by_key",
    "get",
    "list_messages",
    "message_key",
    "redrive",
    "release",
    "renew",
    "stats",
]
