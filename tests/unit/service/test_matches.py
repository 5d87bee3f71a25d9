"""The in-process check of a write's conditions must agree with MongoDB's query semantics."""

from __future__ import annotations

import pytest

from inference_service.adapters.ferretdb_jobs import matches

JOB = {
    "_id": "j1",
    "status": "QUEUED",
    "deleted": False,
    "execution_ids": ["e1", "e2"],
    "applied_events": ["ev1"],
    "image": {"file_id": "f1"},
    "outbox": [],
    "attempt": 2,
}


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ({}, True),
        ({"status": "QUEUED", "deleted": False}, True),
        ({"status": "RUNNING"}, False),
        ({"status": {"$in": ["QUEUED", "RUNNING"]}}, True),
        ({"status": {"$in": ["DONE"]}}, False),
        ({"execution_ids": "e2"}, True),  # an array holds the value
        ({"execution_ids": "e3"}, False),
        ({"applied_events": {"$ne": "ev2"}}, True),
        ({"applied_events": {"$ne": "ev1"}}, False),  # already applied
        ({"image.file_id": "f1"}, True),
        ({"image.file_id": "f2"}, False),
        ({"image": None}, False),
        ({"result": None}, True),  # None matches a missing field
        ({"result.execution_id": None}, True),
        ({"outbox": {"$size": 0}}, True),
        ({"applied_events": {"$size": 0}}, False),
        ({"status": "QUEUED", "deleted": True}, False),  # every condition must hold
        ({"attempt": {"$lt": 3}}, True),
        ({"attempt": {"$lt": 2}}, False),
        ({"deadline": {"$lt": 3}}, False),  # a missing field is never less than anything
        ({"$or": [{"status": "DONE"}, {"attempt": 2}]}, True),  # one branch is enough
        ({"$or": [{"status": "DONE"}, {"attempt": 3}]}, False),
        ({"deleted": False, "$or": [{"status": "QUEUED"}]}, True),
        ({"deleted": True, "$or": [{"status": "QUEUED"}]}, False),
    ],
)
def test_conditions(conditions: dict[str, object], expected: bool) -> None:
    assert matches(JOB, conditions) is expected


def test_an_unknown_operator_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        matches(JOB, {"status": {"$regex": "Q"}})
