"""Tasks: to-dos for reception and clinical staff."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from crm_domain.audit import AuditAction, AuditRecorder
from crm_domain.context import Context
from crm_domain.entities import Action, Resource, Task, TaskPriority, TaskStatus
from crm_domain.errors import Conflict, ValidationError
from crm_domain.pagination import Page
from crm_domain.policies.rbac import Authorizer
from crm_domain.ports.ai import AIProvider, LeadProfile
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork
from crm_domain.queries import TaskQuery
from crm_domain.services._ai import load_lead_profile, suggest_priority
from crm_domain.services._base import ServiceBase
from crm_domain.services._refs import has_membership, require_reference, unknown_reference
from crm_domain.services.commands import CreateTask, UpdateTask, changes
from crm_domain.services.events import EventName

_CLOSED = frozenset({TaskStatus.DONE, TaskStatus.CANCELLED})
_REFERENCES = ("contact_id", "booking_id", "assignee_id")


def _facts(task: Task) -> dict[str, Any]:
    """Non-PHI facts about a task (its title and description may hold PHI)."""
    return {
        "task_id": task.id,
        "status": task.status.value,
        "priority": task.priority.value,
        "contact_id": task.contact_id,
        "booking_id": task.booking_id,
        "assignee_id": task.assignee_id,
        "due_at": None if task.due_at is None else task.due_at.isoformat(),
    }


class TaskService:
    """Use cases on tasks.

    Permissions: ``tasks:create``/``read``/``update``/``delete``; completing a
    task is ``tasks:update``.  A task's contact and booking must belong to the
    location and its assignee be a member of it: an id unknown here — also one
    of another location — is ``NotFound`` naming the field (never a hint that it
    exists elsewhere); an assignee whose membership here was deactivated is a
    ``ValidationError``.  An update checks only the references it changes.

    A task created without a priority gets the AI provider's suggestion (from
    its title and the PHI-free profile of its contact); without a provider, or
    when it fails, ``normal``.
    """

    def __init__(
        self,
        gateway: DatabaseGateway,
        authorizer: Authorizer,
        recorder: AuditRecorder,
        clock: Clock,
        ids: IdFactory,
        ai: AIProvider | None = None,
    ) -> None:
        self._base = ServiceBase(gateway, authorizer, recorder, clock, ids)
        self._ai = ai

    async def create(self, ctx: Context, command: CreateTask) -> Task:
        """Create a task; emits ``TaskCreated``."""
        base = self._base
        async with base.use_case(
            ctx,
            Resource.TASKS,
            Action.CREATE,
            audit=AuditAction.CREATE,
            resource_type="task",
            write=True,
        ) as call:
            now = base.clock.now()
            task = Task(
                id=base.ids.new_id(),
                tenant_id=ctx.tenant_id,
                title=command.title,
                description=command.description,
                contact_id=command.contact_id,
                booking_id=command.booking_id,
                assignee_id=command.assignee_id,
                priority=command.priority or TaskPriority.NORMAL,
                due_at=command.due_at,
                created_at=now,
                updated_at=now,
            )
            await self._check_references(call.uow, task, _REFERENCES)
            call.resource_id = task.id
            if command.priority is None and self._ai is not None:
                profile: LeadProfile | None = None
                if task.contact_id is not None:
                    contact = await call.uow.contacts.get(task.contact_id)
                    profile = await load_lead_profile(call.uow, contact)
                priority = await suggest_priority(self._ai, task.title, profile)
                task = attrs.evolve(task, priority=priority)
            await call.uow.tasks.add(task)
            await call.emit(EventName.TASK_CREATED, "task", task.id, _facts(task))
            return task

    async def get(self, ctx: Context, task_id: str) -> Task:
        """Return one task of the caller's location (``NotFound`` otherwise)."""
        async with self._base.use_case(
            ctx,
            Resource.TASKS,
            Action.READ,
            audit=AuditAction.READ,
            resource_type="task",
            resource_id=task_id,
            write=False,
        ) as call:
            return await call.uow.tasks.get(task_id)

    async def list(self, ctx: Context, query: TaskQuery | None = None) -> Page[Task]:
        """One page of the location's tasks matching ``query``, newest first."""
        async with self._base.use_case(
            ctx,
            Resource.TASKS,
            Action.READ,
            audit=AuditAction.LIST,
            resource_type="task",
            write=False,
        ) as call:
            page = await call.uow.tasks.list(query or TaskQuery())
            call.detail = f"{len(page.items)} returned"
            return page

    async def update(self, ctx: Context, command: UpdateTask) -> Task:
        """Change the set fields; emits ``TaskUpdated`` (``TaskCompleted`` when set done)."""
        base = self._base
        async with base.use_case(
            ctx,
            Resource.TASKS,
            Action.UPDATE,
            audit=AuditAction.UPDATE,
            resource_type="task",
            resource_id=command.task_id,
            write=True,
        ) as call:
            current = await call.uow.tasks.get(command.task_id)
            requested = changes(command, exclude=("task_id",))
            updated = attrs.evolve(current, **requested)
            changed = sorted(
                name for name in requested if getattr(updated, name) != getattr(current, name)
            )
            if not changed:
                return current
            now = base.clock.now()
            completed_at = current.completed_at
            if updated.status is TaskStatus.DONE and current.status is not TaskStatus.DONE:
                completed_at = now
            elif updated.status is not TaskStatus.DONE:
                completed_at = None
            updated = attrs.evolve(updated, updated_at=now, completed_at=completed_at)
            await self._check_references(call.uow, updated, changed)
            await call.uow.tasks.update(updated)
            done = "status" in changed and updated.status is TaskStatus.DONE
            name = EventName.TASK_COMPLETED if done else EventName.TASK_UPDATED
            await call.emit(name, "task", updated.id, {**_facts(updated), "changed": changed})
            return updated

    async def complete(self, ctx: Context, task_id: str) -> Task:
        """Mark an open task done; emits ``TaskCompleted`` (``Conflict`` if already closed)."""
        base = self._base
        async with base.use_case(
            ctx,
            Resource.TASKS,
            Action.UPDATE,
            audit=AuditAction.UPDATE,
            resource_type="task",
            resource_id=task_id,
            write=True,
        ) as call:
            task = await call.uow.tasks.get(task_id)
            if task.status in _CLOSED:
                raise Conflict(f"task {task_id} is already {task.status.value}")
            now = base.clock.now()
            done = attrs.evolve(task, status=TaskStatus.DONE, completed_at=now, updated_at=now)
            call.detail = "completed"
            await call.uow.tasks.update(done)
            await call.emit(EventName.TASK_COMPLETED, "task", done.id, _facts(done))
            return done

    async def delete(self, ctx: Context, task_id: str) -> None:
        """Delete a task; emits ``TaskDeleted``."""
        async with self._base.use_case(
            ctx,
            Resource.TASKS,
            Action.DELETE,
            audit=AuditAction.DELETE,
            resource_type="task",
            resource_id=task_id,
            write=True,
        ) as call:
            await call.uow.tasks.delete(task_id)
            await call.emit(EventName.TASK_DELETED, "task", task_id, {"task_id": task_id})

    @staticmethod
    async def _check_references(uow: UnitOfWork, task: Task, fields: Iterable[str]) -> None:
        # Checked here (not only by the store's foreign keys) so every gateway
        # answers the same way, and another location's id reads as unknown (404),
        # never as "exists, but not yours".  Only the ``fields`` the caller set.
        wanted = set(fields)
        if "contact_id" in wanted and task.contact_id is not None:
            await require_reference(uow.contacts.get, "contact_id", "contact", task.contact_id)
        if "booking_id" in wanted and task.booking_id is not None:
            await require_reference(uow.bookings.get, "booking_id", "booking", task.booking_id)
        if "assignee_id" in wanted and task.assignee_id is not None:
            user_id, here = task.assignee_id, task.tenant_id
            if not await has_membership(uow, user_id, here, active_only=True):
                if not await has_membership(uow, user_id, here, active_only=False):
                    # Users are global: only a membership here makes one known here.
                    raise unknown_reference("assignee_id", "user", user_id)
                raise ValidationError("assignee_id", "no longer an active member of this location")


__all__ = ["TaskService"]
