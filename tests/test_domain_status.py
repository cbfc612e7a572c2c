"""The status model: national codes, legal transitions, reason requirements."""

from __future__ import annotations

import pytest

from gateway.domain.status import (
    NATIONAL_CODES,
    TERMINAL_STATUSES,
    TRANSITIONS,
    WAITING_STATUSES,
    IllegalTransition,
    Status,
    can_transition,
    check_transition,
    is_terminal,
    national_code,
    required_fields,
    resume_status,
    status_from_national_code,
)

S = Status


def test_status_values_are_the_contract_names() -> None:
    assert [s.value for s in Status] == [
        "submitted",
        "received",
        "refused",
        "processing",
        "supplement_requested",
        "fee_requested",
        "withdrawn",
        "suspended",
        "completed",
        "returned",
    ]
    assert Status("fee_requested") is S.FEE_REQUESTED
    assert S.PROCESSING == "processing"


def test_national_codes_match_the_design_table() -> None:
    assert {s.value: national_code(s) for s in Status} == {
        "submitted": 1,
        "received": 2,
        "refused": 3,
        "processing": 4,
        "supplement_requested": 5,
        "fee_requested": 6,
        "withdrawn": 7,
        "suspended": 8,
        "completed": 9,
        "returned": 10,
    }


def test_every_status_has_a_unique_national_code_and_round_trips() -> None:
    assert set(NATIONAL_CODES) == set(Status)
    assert sorted(NATIONAL_CODES.values()) == list(range(1, 11))
    for status in Status:
        assert status_from_national_code(national_code(status)) is status
    assert national_code("completed") == 9


@pytest.mark.parametrize("code", [0, 11, -1, True, "4", 4.0, None])
def test_unknown_national_codes_are_refused(code: object) -> None:
    with pytest.raises(ValueError, match="national status code"):
        status_from_national_code(code)  # type: ignore[arg-type]


def test_unknown_status_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown status 'done'"):
        national_code("done")
    with pytest.raises(ValueError, match="unknown status"):
        can_transition("received", "done")


def test_every_status_has_a_transition_entry() -> None:
    assert set(TRANSITIONS) == set(Status)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (S.SUBMITTED, S.RECEIVED),
        (S.SUBMITTED, S.REFUSED),
        (S.SUBMITTED, S.WITHDRAWN),
        (S.SUBMITTED, S.SUPPLEMENT_REQUESTED),
        (S.RECEIVED, S.PROCESSING),
        (S.RECEIVED, S.FEE_REQUESTED),
        (S.RECEIVED, S.SUSPENDED),
        (S.RECEIVED, S.COMPLETED),
        (S.PROCESSING, S.PROCESSING),
        (S.PROCESSING, S.SUPPLEMENT_REQUESTED),
        (S.PROCESSING, S.COMPLETED),
        (S.PROCESSING, S.REFUSED),
        (S.SUPPLEMENT_REQUESTED, S.RECEIVED),
        (S.SUPPLEMENT_REQUESTED, S.PROCESSING),
        (S.SUPPLEMENT_REQUESTED, S.WITHDRAWN),
        (S.FEE_REQUESTED, S.PROCESSING),
        (S.FEE_REQUESTED, S.RECEIVED),
        (S.FEE_REQUESTED, S.COMPLETED),
        (S.SUSPENDED, S.PROCESSING),
        (S.SUSPENDED, S.RECEIVED),
        (S.SUSPENDED, S.REFUSED),
        (S.COMPLETED, S.RETURNED),
    ],
)
def test_legal_transitions(source: Status, target: Status) -> None:
    assert can_transition(source, target)
    check_transition(source, target)
    check_transition(source.value, target.value)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (S.SUBMITTED, S.PROCESSING),
        (S.SUBMITTED, S.COMPLETED),
        (S.SUBMITTED, S.SUBMITTED),
        (S.SUBMITTED, S.FEE_REQUESTED),
        (S.RECEIVED, S.SUBMITTED),
        (S.RECEIVED, S.RECEIVED),
        (S.RECEIVED, S.RETURNED),
        (S.PROCESSING, S.RECEIVED),
        (S.PROCESSING, S.RETURNED),
        (S.SUPPLEMENT_REQUESTED, S.COMPLETED),
        (S.SUPPLEMENT_REQUESTED, S.FEE_REQUESTED),
        (S.SUPPLEMENT_REQUESTED, S.SUBMITTED),
        (S.FEE_REQUESTED, S.SUSPENDED),
        (S.SUSPENDED, S.COMPLETED),
        (S.COMPLETED, S.PROCESSING),
        (S.COMPLETED, S.REFUSED),
        (S.RETURNED, S.COMPLETED),
    ],
)
def test_illegal_transitions(source: Status, target: Status) -> None:
    assert not can_transition(source, target)
    with pytest.raises(IllegalTransition) as info:
        check_transition(source, target)
    assert info.value.source is source
    assert info.value.target is target
    assert f"from {source.value!r} to {target.value!r}" in str(info.value)


def test_terminal_states_have_no_exits() -> None:
    assert {S.REFUSED, S.WITHDRAWN, S.RETURNED} == TERMINAL_STATUSES
    for source in TERMINAL_STATUSES:
        assert is_terminal(source)
        for target in Status:
            assert not can_transition(source, target)
    with pytest.raises(IllegalTransition, match=r"illegal transition from 'refused' to 'processing'.*terminal"):
        check_transition(S.REFUSED, S.PROCESSING)
    assert not any(is_terminal(s) for s in set(Status) - TERMINAL_STATUSES)


def test_every_status_is_reachable_from_submitted() -> None:
    seen, todo = {S.SUBMITTED}, [S.SUBMITTED]
    while todo:
        for target in TRANSITIONS[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    assert seen == set(Status)


def test_waiting_statuses_and_their_way_back() -> None:
    assert {S.SUPPLEMENT_REQUESTED, S.FEE_REQUESTED, S.SUSPENDED} == WAITING_STATUSES
    for waiting in WAITING_STATUSES:
        # a wait ends by going back to where the dossier was (received or processing), refusal or withdrawal
        assert {S.RECEIVED, S.PROCESSING, S.REFUSED, S.WITHDRAWN} <= TRANSITIONS[waiting]
        for before in (S.RECEIVED, S.PROCESSING):
            assert can_transition(before, waiting)
            assert resume_status(before) is before
            assert can_transition(waiting, resume_status(before))
    assert resume_status(S.SUBMITTED) is S.RECEIVED  # a supplement asked for at reception completes the dossier
    with pytest.raises(ValueError, match="waiting status"):
        resume_status(S.COMPLETED)


def test_reason_requirements() -> None:
    assert required_fields(S.REFUSED) == {"reason"}
    assert required_fields(S.SUSPENDED) == {"reason"}
    assert required_fields("supplement_requested") == {"reason", "components"}
    for status in set(Status) - {S.REFUSED, S.SUSPENDED, S.SUPPLEMENT_REQUESTED}:
        assert required_fields(status) == frozenset()
