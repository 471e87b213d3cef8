"""TaskService on the in-memory gateway."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from crm_domain.entities import Role, TaskPriority, TaskStatus
from crm_domain.errors import Conflict, NotFound, PermissionDenied, ValidationError
from crm_domain.queries import TaskQuery
from crm_domain.services import AddUser, CreateTask, UpdateTask

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


async def test_references_must_belong_to_the_location(world: Any) -> None:
    melbourne_contact = await world.new_contact(world.melbourne)
    tasks = world.services.tasks
    for command, field in (
        (CreateTask(title="t", contact_id=melbourne_contact), "contact_id"),
        (CreateTask(title="t", booking_id="nope"), "booking_id"),
        (CreateTask(title="t", assignee_id="nobody"), "assignee_id"),
        (CreateTask(title="", contact_id=None), "title"),
        (CreateTask(title="t", priority="whenever"), "priority"),
    ):
        with pytest.raises(ValidationError) as caught:
            await tasks.create(world.ctx(), command)
        assert caught.value.field == field
    async with world.gateway.unit_of_work(world.sydney.id) as uow:
        assert await uow.tasks.count(TaskQuery()) == 0


async def test_assignee_must_be_an_active_member_here(world: Any) -> None:
    access = world.services.access
    here = await access.add_user(world.ctx(), AddUser(email="nurse@example.com", role="doctor"))
    there = await access.add_user(
        world.ctx(location=world.melbourne), AddUser(email="far@example.com", role="doctor")
    )
    task = await world.services.tasks.create(
        world.ctx(), CreateTask(title="t", assignee_id=here.user.id)
    )
    assert task.assignee_id == here.user.id
    with pytest.raises(ValidationError):
        await world.services.tasks.create(
            world.ctx(), CreateTask(title="t", assignee_id=there.user.id)
        )


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
