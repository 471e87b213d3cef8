"""TaskService on the in-memory gateway."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from crm_domain.entities import Role, TaskPriority, TaskStatus
from crm_domain.errors import Conflict, NotFound, PermissionDenied, ValidationError
from crm_domain.queries import TaskQuery
from crm_domain.services import AddUser, CreateBooking, CreateTask, UpdateTask

pytestmark = pytest.mark.anyio


async def test_create_get_list(world: Any) -> None:
    contact_id = await world.new_contact()
    tasks = world.services.tasks
    due = world.clock.now() + timedelta(days=1)
    task = await tasks.create(
        world.ctx(Role.DOCTOR),
        CreateTask(
            title="Call back about knee MRI",
            contact_id=contact_id,
            priority="high",
            due_at=due,
        ),
    )
    assert (task.status, task.priority, task.due_at) == (TaskStatus.OPEN, TaskPriority.HIGH, due)
    assert await tasks.get(world.ctx(Role.READONLY), task.id) == task
    page = await tasks.list(world.ctx(), TaskQuery(contact_id=contact_id))
    assert [t.id for t in page.items] == [task.id]
    [event] = await world.events("TaskCreated")
    assert "knee" not in repr(event.payload)  # titles may hold PHI
    assert event.payload["priority"] == "high"


async def _melbourne_refs(world: Any) -> dict[str, str]:
    """Real ids of Melbourne's contact, booking and (Melbourne-only) staff user."""
    contact_id = await world.new_contact(world.melbourne)
    start = world.clock.now() + timedelta(days=2)
    booking = await world.services.bookings.create(
        world.ctx(location=world.melbourne),
        CreateBooking(
            contact_id=contact_id,
            service_type="MRI",
            starts_at=start,
            ends_at=start + timedelta(minutes=30),
        ),
    )
    member = await world.services.access.add_user(
        world.ctx(location=world.melbourne), AddUser(email="far@example.com", role="doctor")
    )
    return {"contact_id": contact_id, "booking_id": booking.id, "assignee_id": member.user.id}


_MISSING = "01JZZZZZZZZZZZZZZZZZZZZZZZ"


def _kw(field: str, value: str) -> dict[str, Any]:
    """One keyword argument, typed loosely enough for any command or query field."""
    return {field: value}


_NOUNS = {"contact_id": "contact", "booking_id": "booking", "assignee_id": "user"}


async def test_another_locations_references_are_not_found_like_unknown_ones(world: Any) -> None:
    theirs = await _melbourne_refs(world)
    tasks = world.services.tasks
    audit_before = len(await world.audit())
    events_before = await world.event_names()
    for field, their_id in theirs.items():
        details = []
        for ref in (their_id, _MISSING):
            with pytest.raises(NotFound) as caught:
                await tasks.create(world.ctx(), CreateTask(title="t", **_kw(field, ref)))
            assert caught.value.field == field
            details.append(caught.value.detail.replace(ref, "<id>"))
        assert details == [f"{field}: {_NOUNS[field]} '<id>' not found"] * 2, details
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        assert await uow.tasks.count(TaskQuery()) == 0
    assert await world.event_names() == events_before
    failures = (await world.audit())[audit_before:]
    assert [(e.action, e.outcome.value, e.resource_id) for e in failures] == [
        ("CREATE", "failed", None)
    ] * 6
    assert [e.detail.split(":")[:2] for e in failures] == [
        ["NotFound", f" {field}"] for field in theirs for _ in range(2)
    ]


async def test_update_to_another_locations_reference_changes_nothing(world: Any) -> None:
    theirs = await _melbourne_refs(world)
    tasks = world.services.tasks
    task = await tasks.create(world.ctx(), CreateTask(title="Send forms"))
    for field, their_id in theirs.items():
        with pytest.raises(NotFound) as caught:
            await tasks.update(
                world.ctx(), UpdateTask(task_id=task.id, title="changed", **_kw(field, their_id))
            )
        assert caught.value.field == field
    assert await tasks.get(world.ctx(), task.id) == task
    assert [n for n in await world.event_names() if n.startswith("Task")] == ["TaskCreated"]


async def test_other_invalid_fields_stay_422(world: Any) -> None:
    tasks = world.services.tasks
    for command, field in (
        (CreateTask(title="", contact_id=None), "title"),
        (CreateTask(title="t", priority="whenever"), "priority"),
    ):
        with pytest.raises(ValidationError) as caught:
            await tasks.create(world.ctx(), command)
        assert caught.value.field == field


async def test_assignee_must_be_an_active_member_here(world: Any) -> None:
    access = world.services.access
    here = await access.add_user(world.ctx(), AddUser(email="nurse@example.com", role="doctor"))
    task = await world.services.tasks.create(
        world.ctx(), CreateTask(title="t", assignee_id=here.user.id)
    )
    assert task.assignee_id == here.user.id
    # A deactivated member of this location is known here: a 422 that says why.
    await access.deactivate_membership(world.ctx(), here.membership.id)
    with pytest.raises(ValidationError) as caught:
        await world.services.tasks.create(
            world.ctx(), CreateTask(title="t", assignee_id=here.user.id)
        )
    assert caught.value.field == "assignee_id"
    # An update that leaves the assignee alone is not refused because of them.
    renamed = await world.services.tasks.update(
        world.ctx(), UpdateTask(task_id=task.id, title="renamed")
    )
    assert (renamed.title, renamed.assignee_id) == ("renamed", here.user.id)


async def test_a_filter_on_another_locations_id_finds_nothing(world: Any) -> None:
    theirs = await _melbourne_refs(world)
    tasks = world.services.tasks
    await tasks.create(
        world.ctx(location=world.melbourne), CreateTask(title="theirs", **dict[str, Any](theirs))
    )
    for field, their_id in theirs.items():
        for ref in (their_id, _MISSING):
            page = await tasks.list(world.ctx(), TaskQuery(**_kw(field, ref)))
            assert page.items == () and page.next_cursor is None, (field, ref)
        there = await tasks.list(
            world.ctx(location=world.melbourne), TaskQuery(**_kw(field, their_id))
        )
        assert len(there.items) == 1


async def test_update_and_complete(world: Any) -> None:
    tasks = world.services.tasks
    task = await tasks.create(world.ctx(), CreateTask(title="Send forms", description="x"))
    world.clock.advance(timedelta(minutes=5))
    updated = await tasks.update(
        world.ctx(Role.RECEPTIONIST),
        UpdateTask(task_id=task.id, priority="urgent", description=None),
    )
    assert (updated.priority, updated.description, updated.title) == (
        TaskPriority.URGENT,
        None,
        "Send forms",
    )
    assert updated.updated_at == world.clock.now()
    done = await tasks.update(world.ctx(), UpdateTask(task_id=task.id, status="done"))
    assert done.completed_at == world.clock.now()
    reopened = await tasks.update(world.ctx(), UpdateTask(task_id=task.id, status="open"))
    assert reopened.completed_at is None
    completed = await tasks.complete(world.ctx(), task.id)
    assert completed.status is TaskStatus.DONE
    with pytest.raises(Conflict):
        await tasks.complete(world.ctx(), task.id)
    names = [n for n in await world.event_names() if n.startswith("Task")]
    assert names == ["TaskCreated", "TaskUpdated", "TaskCompleted", "TaskUpdated", "TaskCompleted"]


async def test_delete(world: Any) -> None:
    tasks = world.services.tasks
    task = await tasks.create(world.ctx(), CreateTask(title="Tidy"))
    with pytest.raises(PermissionDenied):
        await tasks.delete(world.ctx(Role.DOCTOR), task.id)
    await tasks.delete(world.ctx(), task.id)
    with pytest.raises(NotFound):
        await tasks.get(world.ctx(), task.id)
    assert (await world.event_names())[-1] == "TaskDeleted"
    outcomes = [(e.action, e.outcome.value) for e in (await world.audit())[-3:]]
    assert outcomes == [("DELETE", "denied"), ("DELETE", "success"), ("READ", "failed")]
