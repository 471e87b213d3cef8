"""Recording a touchpoint inside a running use case, with its ``TouchpointAdded`` event."""

from __future__ import annotations

from crm_domain.entities import Touchpoint
from crm_domain.services._base import Call
from crm_domain.services.events import EventName


async def add_touchpoint(call: Call, touchpoint: Touchpoint) -> None:
    """Store ``touchpoint`` in the call's unit of work and emit ``TouchpointAdded``.

    The event lets the worker rescore the contact's warmness; its payload is
    ids and kinds only.
    """
    await call.uow.touchpoints.add(touchpoint)
    await call.emit(
        EventName.TOUCHPOINT_ADDED,
        "contact",
        touchpoint.contact_id,
        {
            "contact_id": touchpoint.contact_id,
            "touchpoint_id": touchpoint.id,
            "kind": touchpoint.kind.value,
            "channel": touchpoint.channel.value,
        },
    )


__all__ = ["add_touchpoint"]
