"""The outbox message kinds: what the core asks to be done outside the database, and their payloads.

Every message's ``ordering_key`` is the dossier code (a dossier's messages are delivered in order; the national
portal's syncs have a lane of their own, ``<dossier code>#national``, so that a failing agency and the portal never
hold each other back) and its
``idempotency_key`` is :func:`gateway.outbox.message_key` of the dossier code and the step, so a receiver that
honours the key applies each step exactly once.

- ``agency.deliver`` → the agency (target: agency code); payload ``{"dossier_code", "agency_code"}``;
  step ``deliver:<agency>``.
- ``agency.supplement`` → the agency; payload ``{"dossier_code", "agency_code", "components": [codes]}``;
  step ``supplement:<n>``.
- ``agency.withdraw`` → the agency; payload ``{"dossier_code", "agency_code", "reason"}``; step ``withdraw``.
- ``portal.webhook`` → the provincial portal (target ``portal``); payload ``{"dossier_code", "event": {status, at,
  actor, note}}``; step ``webhook:<history id>``.
- ``national.sync`` → the national public-service portal (target ``national_portal``); payload ``{"dossier_code",
  "history_id"}``; step ``national:<history id>``: the dossier and its progress up to that history entry.
- ``agency.fee_paid`` → the agency; payload ``{"dossier_code", "agency_code", "reference"}``; step
  ``fee_paid:<payment reference>``: the applicant paid the fees the agency asked for.
- ``postal.order`` → the public postal service (target ``postal``, ordering key ``<dossier code>#postal``);
  payload ``{"dossier_code", "kind": "pickup"|"delivery"}``; step ``postal:<kind>``: order the pickup of the
  originals or the delivery of the result.

- ``sms.send`` → the SMS gateway (target ``sms``, ordering key ``sms:<phone hash>``); payload ``{"to", "text"}``
  (the reply to a citizen's lookup by SMS: the number is kept only until it is sent, never logged); idempotency key
  ``sms:<hash of the inbound message>``: one reply per inbound text, however often the SMS gateway repeats it.
- ``payment.init`` → the national payment platform (target ``payment``, ordering key ``<dossier code>#payment``);
  payload ``{"dossier_code", "reference"}``; step
  ``payment_init:<reference>``: create the payment there and keep the payer's URL it answers.

- ``national.rating`` → the national portal (target ``national_portal``, the dossier's national lane as ordering key,
  after its syncs); payload ``{"dossier_code", "rating_id"}``; step ``rating``: the applicant's satisfaction rating.
- ``agency.question`` → an agency registered with ``protocol = "rest"`` (target: agency code, no ordering key);
  payload ``{"question_id", "agency_code"}``; idempotency key ``question:<id>:deliver``: a citizen's question.
- ``portal.question_answer`` → the provincial portal (target ``portal``, no ordering key); payload ``{"type":
  "question_answered", "question": {...}}`` (the answer, never the asker's contact details); idempotency key
  ``question:<id>:answer``.

- ``alert.webhook`` → the operators' alert webhook (target ``alerts``, no ordering key); payload: the deadline
  watch's finding (codes, condition and times, never personal data); idempotency key
  ``<dossier code>:alert:<condition>``: each dossier's condition is alerted once.

The dispatcher reads the dossier's current content from the database when it delivers, so a payload carries
references, not copies of personal data.
"""

from __future__ import annotations

AGENCY_DELIVER = "agency.deliver"
AGENCY_SUPPLEMENT = "agency.supplement"
AGENCY_WITHDRAW = "agency.withdraw"
PORTAL_WEBHOOK = "portal.webhook"
PORTAL_TARGET = "portal"
NATIONAL_SYNC = "national.sync"
NATIONAL_TARGET = "national_portal"
AGENCY_FEE_PAID = "agency.fee_paid"
POSTAL_ORDER = "postal.order"
POSTAL_TARGET = "postal"
PAYMENT_TARGET = "payment"
ALERT_WEBHOOK = "alert.webhook"
NATIONAL_RATING = "national.rating"
AGENCY_QUESTION = "agency.question"
PORTAL_QUESTION_ANSWER = "portal.question_answer"
ALERTS_TARGET = "alerts"
SMS_SEND = "sms.send"
SMS_TARGET = "sms"
PAYMENT_INIT = "payment.init"

AGENCY_KINDS = frozenset({AGENCY_DELIVER, AGENCY_SUPPLEMENT, AGENCY_WITHDRAW})
