"""One description per CRUD repository, driving the table-driven conformance tests.

For each repository the kit knows how to build an ordinary entity (``make``),
an entity full of edge values (``edge``), a changed copy (``change``), and a
small set of varied entities (``variants``) that every filter of the
repository's query class can tell apart.  Parents (locations, contacts,
campaigns, users, bookings) are saved first, because SQL gateways enforce
foreign keys.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from crm_domain.entities import (
    AudienceFilter,
    PermissionOverride,
    Role,
    RuleAction,
    RuleCondition,
)
from crm_domain.entities.location import LocationSettings, OpeningHours
from crm_domain.queries import (
    AutomationQuery,
    BookingQuery,
    CampaignQuery,
    ContactQuery,
    DeliveryQuery,
    IpRuleQuery,
    ListQuery,
    LocationQuery,
    MembershipQuery,
    SmsQuery,
    SuppressionQuery,
    TaskQuery,
    TouchpointQuery,
    UserQuery,
)
from crm_domain.testing._world import LEAP_DAY, MINUS_0330, PLUS_1030, World, evolve, fill

Maker = Callable[[World, str], Awaitable[Any]]
Variants = Callable[[World, str], Awaitable[list[Any]]]


@attrs.frozen(slots=True, kw_only=True)
class RepoSpec:
    """How the kit exercises one CRUD repository of the unit of work."""

    name: str
    query: type[ListQuery]
    tenant_owned: bool
    make: Maker
    edge: Maker
    change: Callable[[World, Any], Any]
    variants: Variants

    def __str__(self) -> str:
        return self.name


# -- locations -------------------------------------------------------------


async def _location(w: World, _t: str) -> Any:
    return w.location()


async def _location_edge(w: World, _t: str) -> Any:
    return w.location(
        code=fill(32, "z9-"),
        name=fill(200),
        timezone="America/St_Johns",
        address=fill(500, "Level 3, 1 Kit St, Surry Hills NSW 2010 — רחוב "),
        is_active=False,
        # evolve: the converter-typed field confuses mypy in a direct call.
        settings=evolve(
            LocationSettings(booking_buffer_minutes=0, retention_days=3650, ai_phi_allowed=True),
            operating_hours=(
                OpeningHours(weekday=0, opens="07:30", closes="19:45"),
                OpeningHours(weekday=6, opens="00:00", closes="23:59"),
            ),
        ),
        created_at=w.at(microseconds=1).astimezone(MINUS_0330),
    )


async def _location_variants(w: World, _t: str) -> list[Any]:
    return [
        w.location(code="kit-variant-one"),
        w.location(code="kit-variant-two", is_active=False),
    ]


# -- users -----------------------------------------------------------------


async def _user(w: World, _t: str) -> Any:
    return w.user()


async def _user_edge(w: World, _t: str) -> Any:
    return w.user(
        email=f"zoë.ünïcode{w.serial()}@exämple.com",
        name=fill(200),
        is_active=False,
        google_sub=fill(255, "1234567890"),
        last_login_at=w.at(days=-1).astimezone(PLUS_1030),
        created_at=w.at(microseconds=999999).astimezone(MINUS_0330),
    )


async def _user_variants(w: World, _t: str) -> list[Any]:
    return [w.user(), w.user(is_active=False), w.user()]


# -- memberships -----------------------------------------------------------


async def _membership(w: World, _t: str) -> Any:
    user = w.user()
    await w.save(None, user)
    return w.membership(user.id, w.a.id)


async def _membership_edge(w: World, _t: str) -> Any:
    user = w.user()
    await w.save(None, user)
    return w.membership(
        user.id,
        w.b.id,
        role=Role.READONLY,
        is_active=False,
        custom_permissions=(
            PermissionOverride(resource="contacts", action="delete", effect="deny"),
            PermissionOverride(resource="reports", action="read", effect="allow"),
        ),
        created_at=w.at(seconds=1).astimezone(PLUS_1030),
    )


async def _membership_variants(w: World, _t: str) -> list[Any]:
    u1, u2 = w.user(), w.user()
    await w.save(None, u1, u2)
    return [
        w.membership(u1.id, w.a.id, role=Role.ADMIN),
        w.membership(u1.id, w.b.id, role=Role.DOCTOR, is_active=False),
        w.membership(u2.id, w.a.id, role=Role.RECEPTIONIST),
    ]


# -- ip rules --------------------------------------------------------------


async def _ip_rule(w: World, t: str) -> Any:
    return w.ip_rule(t)


async def _ip_rule_edge(w: World, t: str) -> Any:
    return w.ip_rule(
        t,
        cidr="2001:db8:abcd:12::/64",
        description=fill(500),
        is_active=False,
        created_by=fill(255),
        created_at=w.at(microseconds=7).astimezone(MINUS_0330),
    )


async def _ip_rule_variants(w: World, t: str) -> list[Any]:
    return [
        w.ip_rule(t, cidr="192.0.2.0/24"),
        w.ip_rule(t, cidr="2001:db8::/32", is_active=False),
        w.ip_rule(t, cidr="198.51.100.7/32"),
    ]


# -- contacts --------------------------------------------------------------


async def _contact(w: World, t: str) -> Any:
    return w.contact(t)


async def _contact_edge(w: World, t: str) -> Any:
    return w.contact(
        t,
        first_name=fill(100),
        last_name=fill(100, "ديفيد כהן "),
        email=f"{'z' * 60}{w.serial():04d}@exämple.com",
        phone="+61412345678",
        source="manychat",
        status="patient",
        warmness=100,
        warmness_reasons=("booked twice 📅", "replied «yes»"),
        tags=tuple(f"tag-{i:02d}-{fill(30)}"[:50] for i in range(50)),
        email_opt_in=True,
        sms_opt_in=True,
        consent_updated_at=w.at(minutes=-5).astimezone(PLUS_1030),
        service_interest=fill(100),
        date_of_birth=LEAP_DAY,
        notes=fill(10_000),
        created_at=w.at(microseconds=1).astimezone(MINUS_0330),
        updated_at=w.at(seconds=1, microseconds=999_999).astimezone(PLUS_1030),
    )


async def _contact_variants(w: World, t: str) -> list[Any]:
    return [
        w.contact(
            t,
            first_name="Alice",
            last_name="Zed",
            email=f"alice{w.serial()}@kit.example",
            phone="+61412345001",
            source="meta_ad",
            status="new",
            warmness=10,
            tags=("vip", "mri"),
            email_opt_in=True,
            created_at=w.at(days=-3),
        ),
        w.contact(
            t,
            first_name="Bob",
            last_name="Young",
            email=None,
            phone="+61412345002",
            source="website",
            status="booked",
            warmness=50,
            tags=("ct",),
            sms_opt_in=True,
            created_at=w.at(days=-2),
        ),
        w.contact(
            t,
            first_name="Chloé",
            last_name="Xu",
            email=f"chloe{w.serial()}@kit.example",
            phone=None,
            source="google_ad",
            status="contacted",
            warmness=90,
            email_opt_in=True,
            sms_opt_in=True,
            created_at=w.at(days=-1).astimezone(PLUS_1030),
        ),
        w.contact(
            t,
            first_name="Dov",
            last_name="שלום",
            email=f"dov{w.serial()}@kit.example",
            phone="+61412345004",
            source="meta_ad",
            status="lost",
            warmness=70,
            tags=("mri",),
            created_at=w.at(hours=-1),
        ),
    ]


def _change_contact(w: World, c: Any) -> Any:
    return evolve(
        c,
        first_name="Renée 🙂",
        status="qualified",
        warmness=42,
        tags=("x-ray", "follow-up"),
        notes=None,
        sms_opt_in=not c.sms_opt_in,
        updated_at=w.at(minutes=5).astimezone(MINUS_0330),
    )


# -- touchpoints -----------------------------------------------------------


async def _touchpoint(w: World, t: str) -> Any:
    contact = w.contact(t)
    await w.save(t, contact)
    return w.touchpoint(t, contact.id)


async def _touchpoint_edge(w: World, t: str) -> Any:
    contact = w.contact(t)
    campaign = w.campaign(t)
    await w.save(t, contact, campaign)
    return w.touchpoint(
        t,
        contact.id,
        kind="email_clicked",
        channel="email",
        campaign_id=campaign.id,
        metadata={
            "utm_source": "meta 🦄",
            "page": "/דף",
            "duration_s": 12,
            "ratio": 0.25,
            "returning": True,
            "missing": None,
        },
        occurred_at=w.at(microseconds=3).astimezone(MINUS_0330),
        created_at=w.at(microseconds=4).astimezone(PLUS_1030),
    )


async def _touchpoint_variants(w: World, t: str) -> list[Any]:
    c1, c2 = w.contact(t), w.contact(t)
    campaign = w.campaign(t)
    await w.save(t, c1, c2, campaign)
    return [
        w.touchpoint(t, c1.id, kind="note", occurred_at=w.at(days=-3)),
        w.touchpoint(
            t, c1.id, kind="email_opened", campaign_id=campaign.id, occurred_at=w.at(days=-2)
        ),
        w.touchpoint(t, c2.id, kind="note", occurred_at=w.at(days=-1)),
        w.touchpoint(t, c2.id, kind="ad_click", channel="web", occurred_at=w.at(hours=-1)),
    ]


def _change_touchpoint(w: World, tp: Any) -> Any:
    return evolve(tp, kind="call_inbound", channel="phone", metadata={"duration_s": 95})


# -- bookings --------------------------------------------------------------


async def _booking(w: World, t: str) -> Any:
    contact = w.contact(t)
    await w.save(t, contact)
    return w.booking(t, contact.id)


async def _booking_edge(w: World, t: str) -> Any:
    contact = w.contact(t)
    await w.save(t, contact)
    start = w.at(days=30, microseconds=250).astimezone(PLUS_1030)
    return w.booking(
        t,
        contact.id,
        service_type=fill(100),
        starts_at=start,
        ends_at=(start + (w.at(minutes=45) - w.now)).astimezone(MINUS_0330),
        status="confirmed",
        external_id=fill(255, "wix-☃-"),
        source=fill(50),
        notes=fill(10_000),
        cancellation_reason=fill(500),
    )


async def _booking_variants(w: World, t: str) -> list[Any]:
    c1, c2 = w.contact(t), w.contact(t)
    await w.save(t, c1, c2)
    return [
        w.booking(t, c1.id, external_id="wix-1", starts_at=w.at(days=1), ends_at=w.at(days=1.1)),
        w.booking(
            t,
            c1.id,
            status="confirmed",
            service_type="ct",
            starts_at=w.at(days=2),
            ends_at=w.at(days=2.1),
        ),
        w.booking(t, c2.id, external_id="wix-3", starts_at=w.at(days=3), ends_at=w.at(days=3.1)),
        w.booking(
            t,
            c2.id,
            status="cancelled",
            service_type="xray",
            starts_at=w.at(days=4),
            ends_at=w.at(days=4.1),
        ),
    ]


def _change_booking(w: World, b: Any) -> Any:
    return b.cancelled(w.at(minutes=1).astimezone(PLUS_1030), reason="Feeling better ✔")


# -- tasks -----------------------------------------------------------------


async def _task(w: World, t: str) -> Any:
    return w.task(t)


async def _task_edge(w: World, t: str) -> Any:
    user = w.user()
    contact = w.contact(t)
    booking = w.booking(t, contact.id)
    await w.save(None, user)
    await w.save(t, contact, booking)
    return w.task(
        t,
        title=fill(200),
        description=fill(10_000),
        contact_id=contact.id,
        booking_id=booking.id,
        assignee_id=user.id,
        status="done",
        priority="urgent",
        due_at=w.at(days=2, microseconds=11).astimezone(MINUS_0330),
        completed_at=w.at(hours=1).astimezone(PLUS_1030),
    )


async def _task_variants(w: World, t: str) -> list[Any]:
    user = w.user()
    contact = w.contact(t)
    booking = w.booking(t, contact.id)
    await w.save(None, user)
    await w.save(t, contact, booking)
    return [
        w.task(
            t,
            priority="high",
            assignee_id=user.id,
            contact_id=contact.id,
            booking_id=booking.id,
            due_at=w.at(days=1),
        ),
        w.task(t, status="done"),
        w.task(t, priority="low", assignee_id=user.id, contact_id=contact.id, due_at=w.at(days=3)),
        w.task(t, status="in_progress", priority="urgent", due_at=w.at(days=2)),
    ]


def _change_task(w: World, task: Any) -> Any:
    return evolve(task, status="in_progress", title="Call back — urgent", due_at=w.at(days=1))


# -- sms -------------------------------------------------------------------


async def _sms(w: World, t: str) -> Any:
    return w.sms(t)


async def _sms_edge(w: World, t: str) -> Any:
    contact = w.contact(t)
    booking = w.booking(t, contact.id)
    await w.save(t, contact, booking)
    return w.sms(
        t,
        contact_id=contact.id,
        booking_id=booking.id,
        direction="inbound",
        from_number="+61412345678",
        to_number="+14155550100",
        body=fill(1600),
        status="received",
        provider=fill(50),
        provider_message_id=fill(255, "abc-"),
        intent="reschedule",
        intent_confidence=0.875,
        sent_at=w.at(seconds=-1).astimezone(MINUS_0330),
        created_at=w.at(microseconds=5).astimezone(PLUS_1030),
    )


async def _sms_variants(w: World, t: str) -> list[Any]:
    contact = w.contact(t)
    await w.save(t, contact)
    return [
        w.sms(t, contact_id=contact.id, provider_message_id="pm-1"),
        w.sms(
            t,
            direction="inbound",
            status="received",
            intent="confirm",
            intent_confidence=0.9,
            body="",
        ),
        w.sms(t, contact_id=contact.id, status="delivered", provider_message_id="pm-3"),
        w.sms(t, direction="inbound", status="received", intent="opt_out"),
    ]


def _change_sms(w: World, m: Any) -> Any:
    return evolve(m, status="sent", provider="clicksend", sent_at=w.at(seconds=2))


# -- campaigns -------------------------------------------------------------


async def _campaign(w: World, t: str) -> Any:
    return w.campaign(t)


async def _campaign_edge(w: World, t: str) -> Any:
    return w.campaign(
        t,
        name=fill(200),
        subject=fill(300),
        body_html="<p>" + fill(20_000) + "</p>",
        body_text=fill(20_000),
        audience=AudienceFilter(
            source="meta_ad", status="new", tag="mri", warmness_min=10, warmness_max=90
        ),
        status="scheduled",
        scheduled_at=w.at(days=7, microseconds=77).astimezone(MINUS_0330),
        sent_count=2**31 - 1,
        opened_count=0,
        clicked_count=7,
    )


async def _campaign_variants(w: World, t: str) -> list[Any]:
    return [w.campaign(t), w.campaign(t, status="scheduled"), w.campaign(t, status="completed")]


def _change_campaign(w: World, c: Any) -> Any:
    return evolve(c, status="sending", sent_count=3, subject="Nouveau sujet ✉")


# -- deliveries ------------------------------------------------------------


async def _delivery(w: World, t: str) -> Any:
    contact, campaign = w.contact(t), w.campaign(t)
    await w.save(t, contact, campaign)
    return w.delivery(t, campaign.id, contact.id)


async def _delivery_edge(w: World, t: str) -> Any:
    contact, campaign = w.contact(t), w.campaign(t)
    await w.save(t, contact, campaign)
    return w.delivery(
        t,
        campaign.id,
        contact.id,
        email=f"ünï{w.serial()}@exämple.com",
        status="clicked",
        provider_message_id=fill(255),
        error=fill(2000),
        sent_at=w.at(seconds=1).astimezone(PLUS_1030),
        opened_at=w.at(seconds=2, microseconds=1).astimezone(MINUS_0330),
        clicked_at=w.at(seconds=3),
    )


async def _delivery_variants(w: World, t: str) -> list[Any]:
    c1, c2 = w.contact(t), w.contact(t)
    k1, k2 = w.campaign(t), w.campaign(t)
    await w.save(t, c1, c2, k1, k2)
    return [
        w.delivery(t, k1.id, c1.id, status="sent"),
        w.delivery(t, k1.id, c2.id),
        w.delivery(t, k2.id, c1.id, status="opened"),
    ]


def _change_delivery(w: World, d: Any) -> Any:
    return evolve(d, status="sent", provider_message_id="gm-1", sent_at=w.at(seconds=9))


# -- automations -----------------------------------------------------------


async def _automation(w: World, t: str) -> Any:
    return w.automation(t)


async def _automation_edge(w: World, t: str) -> Any:
    return w.automation(
        t,
        name=fill(200),
        trigger=fill(100, "BookingCancelled"),
        conditions=(
            RuleCondition(field="source", op="eq", value="meta_ad"),
            RuleCondition(field="warmness", op="gte", value=70),
            RuleCondition(field="score", op="lt", value=0.5),
            RuleCondition(field="vip", op="eq", value=True),
            RuleCondition(field="notes", op="contains", value="שלום"),
            RuleCondition(field="email", op="ne", value=None),
        ),
        actions=(
            RuleAction(kind="create_task", params={"title": "Call 📞", "priority": "high"}),
            RuleAction(kind="add_tag", params={"tag": "hot"}),
            RuleAction(kind="send_sms", params={"template": "remind", "delay_minutes": 30}),
        ),
        enabled=False,
        created_at=w.at(microseconds=9).astimezone(MINUS_0330),
        updated_at=w.at(microseconds=10).astimezone(PLUS_1030),
    )


async def _automation_variants(w: World, t: str) -> list[Any]:
    return [
        w.automation(t),
        w.automation(t, trigger="BookingCancelled", enabled=False),
        w.automation(t, trigger="BookingCancelled"),
    ]


def _change_automation(w: World, r: Any) -> Any:
    return evolve(
        r,
        enabled=not r.enabled,
        actions=(RuleAction(kind="set_status", params={"status": "qualified"}),),
        updated_at=w.at(minutes=3),
    )


# -- suppressions ----------------------------------------------------------


async def _suppression(w: World, t: str) -> Any:
    return w.suppression(t)


async def _suppression_edge(w: World, t: str) -> Any:
    return w.suppression(
        t,
        channel="email",
        address=f"zoë.ünïcode{w.serial()}@exämple.com",
        reason="complaint",
        note=fill(500),
        created_by=fill(255),
        created_at=w.at(microseconds=11).astimezone(MINUS_0330),
    )


async def _suppression_variants(w: World, t: str) -> list[Any]:
    return [
        w.suppression(t),
        w.suppression(
            t, channel="email", address=f"bounced{w.serial()}@kit.example", reason="bounce"
        ),
        w.suppression(t, reason="manual", note="asked at the desk"),
    ]


def _change_suppression(w: World, s: Any) -> Any:
    return evolve(s, reason="manual", note="confirmed by phone")


def _toggle_active(_w: World, entity: Any) -> Any:
    return evolve(entity, is_active=not entity.is_active)


SPECS: tuple[RepoSpec, ...] = (
    RepoSpec(
        name="locations",
        query=LocationQuery,
        tenant_owned=False,
        make=_location,
        edge=_location_edge,
        change=lambda w, loc: evolve(loc, name="Sydney — Bondi 🏖", timezone="Asia/Kolkata"),
        variants=_location_variants,
    ),
    RepoSpec(
        name="users",
        query=UserQuery,
        tenant_owned=False,
        make=_user,
        edge=_user_edge,
        change=lambda w, u: evolve(u, name="Dr. ليلى", last_login_at=w.at(minutes=1)),
        variants=_user_variants,
    ),
    RepoSpec(
        name="memberships",
        query=MembershipQuery,
        tenant_owned=False,
        make=_membership,
        edge=_membership_edge,
        change=lambda w, m: evolve(m, role=Role.DOCTOR, is_active=False),
        variants=_membership_variants,
    ),
    RepoSpec(
        name="ip_rules",
        query=IpRuleQuery,
        tenant_owned=True,
        make=_ip_rule,
        edge=_ip_rule_edge,
        change=_toggle_active,
        variants=_ip_rule_variants,
    ),
    RepoSpec(
        name="contacts",
        query=ContactQuery,
        tenant_owned=True,
        make=_contact,
        edge=_contact_edge,
        change=_change_contact,
        variants=_contact_variants,
    ),
    RepoSpec(
        name="touchpoints",
        query=TouchpointQuery,
        tenant_owned=True,
        make=_touchpoint,
        edge=_touchpoint_edge,
        change=_change_touchpoint,
        variants=_touchpoint_variants,
    ),
    RepoSpec(
        name="bookings",
        query=BookingQuery,
        tenant_owned=True,
        make=_booking,
        edge=_booking_edge,
        change=_change_booking,
        variants=_booking_variants,
    ),
    RepoSpec(
        name="tasks",
        query=TaskQuery,
        tenant_owned=True,
        make=_task,
        edge=_task_edge,
        change=_change_task,
        variants=_task_variants,
    ),
    RepoSpec(
        name="sms",
        query=SmsQuery,
        tenant_owned=True,
        make=_sms,
        edge=_sms_edge,
        change=_change_sms,
        variants=_sms_variants,
    ),
    RepoSpec(
        name="campaigns",
        query=CampaignQuery,
        tenant_owned=True,
        make=_campaign,
        edge=_campaign_edge,
        change=_change_campaign,
        variants=_campaign_variants,
    ),
    RepoSpec(
        name="deliveries",
        query=DeliveryQuery,
        tenant_owned=True,
        make=_delivery,
        edge=_delivery_edge,
        change=_change_delivery,
        variants=_delivery_variants,
    ),
    RepoSpec(
        name="automations",
        query=AutomationQuery,
        tenant_owned=True,
        make=_automation,
        edge=_automation_edge,
        change=_change_automation,
        variants=_automation_variants,
    ),
    RepoSpec(
        name="suppressions",
        query=SuppressionQuery,
        tenant_owned=True,
        make=_suppression,
        edge=_suppression_edge,
        change=_change_suppression,
        variants=_suppression_variants,
    ),
)

TENANT_SPECS = tuple(s for s in SPECS if s.tenant_owned)

__all__ = ["SPECS", "TENANT_SPECS", "RepoSpec"]
