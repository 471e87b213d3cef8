"""The demo data of docs/contract.md: two locations, four users, a few hundred records each.

Seeding is idempotent — locations, users, memberships, IP rules and grants are
created only when missing, and a location's records only when it has no
contacts yet — and deterministic: the same seed gives the same people, the
same bookings and the same messages, placed over the 90 days before "now".
Every demo contact's warmness is scored from its seeded touchpoints and
bookings by the offline heuristic provider (or the one passed in), so the demo
shows explained scores (``warmness_reasons``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import attrs
from crm_ai import HeuristicProvider
from crm_domain.bootstrap import bootstrap
from crm_domain.context import Context
from crm_domain.entities import (
    OPEN_STATUSES,
    Booking,
    BookingStatus,
    Channel,
    Contact,
    ContactSource,
    ContactStatus,
    Location,
    Role,
    SmsDirection,
    SmsIntent,
    SmsMessage,
    SmsStatus,
    StaffUser,
    Task,
    TaskPriority,
    TaskStatus,
    Touchpoint,
    TouchpointKind,
)
from crm_domain.errors import NotFound, Unavailable, ValidationError
from crm_domain.ports.ai import AIProvider
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway
from crm_domain.queries import BookingQuery, ContactQuery
from crm_domain.services import History, HistoryImportService, lead_profile
from crm_domain.services.commands import AddUser, AllowIp, CreateLocation
from crm_domain.values import parse_phone

if TYPE_CHECKING:
    from crm_http_litestar.runtime import CrmRuntime

DEMO_SEED = 20_240_601
DEMO_CIDRS = ("127.0.0.0/8", "::1/128")


@attrs.frozen(slots=True, kw_only=True)
class DemoLocation:
    """A demo location and its front-desk number."""

    code: str
    name: str
    timezone: str
    phone: str


DEMO_LOCATIONS = (
    DemoLocation(
        code="sydney",
        name="Avatar Imaging Sydney",
        timezone="Australia/Sydney",
        phone="+61292000000",
    ),
    DemoLocation(
        code="melbourne",
        name="Avatar Imaging Melbourne",
        timezone="Australia/Melbourne",
        phone="+61390000000",
    ),
)

#: email → {location code: role}, as docs/contract.md lists them.
DEMO_USERS: dict[str, tuple[str, dict[str, Role]]] = {
    "owner@avatar-imaging.example": (
        "Olivia Owner",
        {"sydney": Role.ADMIN, "melbourne": Role.ADMIN},
    ),
    "reception.sydney@avatar-imaging.example": ("Riley Reception", {"sydney": Role.RECEPTIONIST}),
    "doctor.melbourne@avatar-imaging.example": ("Dr Morgan Medic", {"melbourne": Role.DOCTOR}),
    "auditor@avatar-imaging.example": ("Avery Auditor", {"sydney": Role.READONLY}),
}

_FIRST = [
    "Olivia",
    "Noah",
    "Charlotte",
    "Oliver",
    "Amelia",
    "Jack",
    "Isla",
    "William",
    "Mia",
    "Leo",
    "Ava",
    "Henry",
    "Grace",
    "Lucas",
    "Chloe",
    "Thomas",
    "Zoe",
    "James",
    "Ruby",
    "Ethan",
    "Sophie",
    "Harrison",
    "Matilda",
    "Archie",
    "Ella",
    "Hudson",
    "Lily",
    "Mason",
    "Evie",
    "Levi",
    "Aria",
    "Alexander",
    "Willow",
    "Hunter",
    "Sienna",
    "Charlie",
    "Harper",
    "Max",
    "Ivy",
    "Oscar",
]
_LAST = [
    "Smith",
    "Jones",
    "Williams",
    "Brown",
    "Wilson",
    "Taylor",
    "Johnson",
    "White",
    "Martin",
    "Anderson",
    "Thompson",
    "Nguyen",
    "Thomas",
    "Walker",
    "Harris",
    "Lee",
    "Ryan",
    "Robinson",
    "Kelly",
    "King",
    "Davis",
    "Wright",
    "Evans",
    "Roberts",
    "Green",
    "Hall",
    "Wood",
    "Jackson",
    "Clarke",
    "Patel",
    "Khan",
    "Lewis",
    "James",
    "Phillips",
    "Mitchell",
    "Chen",
    "Wang",
    "Singh",
    "Tran",
    "Scott",
]
_SERVICES = ("MRI", "CT", "X-ray", "Ultrasound", "Mammogram", "Bone density")
_SOURCES = tuple(ContactSource)
_STATUS_WEIGHTS = (
    (ContactStatus.NEW, 30),
    (ContactStatus.CONTACTED, 20),
    (ContactStatus.QUALIFIED, 15),
    (ContactStatus.BOOKED, 15),
    (ContactStatus.PATIENT, 15),
    (ContactStatus.LOST, 5),
)
_TASK_TITLES = (
    "Call back about referral",
    "Confirm booking by phone",
    "Send preparation instructions",
    "Follow up no-show",
    "Request previous scans",
    "Check Medicare eligibility",
)
_REPLIES = (
    ("YES", SmsIntent.CONFIRM),
    ("Yes see you then", SmsIntent.CONFIRM),
    ("Can't make it, please cancel", SmsIntent.CANCEL),
    ("Could we move it to next week?", SmsIntent.RESCHEDULE),
    ("STOP", SmsIntent.OPT_OUT),
    ("Do I need to fast before the scan?", SmsIntent.QUESTION),
)


class SeededIds:
    """ULID-shaped ids from a seeded generator: time-sortable, reproducible for one seed."""

    _ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._last = 0

    def at(self, when: datetime) -> str:
        """An id for something created at ``when`` (strictly above the previous one)."""
        value = (int(when.timestamp() * 1000) << 80) | self._rng.getrandbits(80)
        value = max(value, self._last + 1)
        self._last = value
        return "".join(self._ALPHABET[(value >> s) & 31] for s in range(125, -1, -5))


@attrs.frozen(slots=True, kw_only=True)
class SeedReport:
    """What a seed run created."""

    locations: int = 0
    users: int = 0
    memberships: int = 0
    ip_rules: int = 0
    contacts: int = 0
    touchpoints: int = 0
    bookings: int = 0
    tasks: int = 0
    sms: int = 0


async def seed_demo(
    gateway: DatabaseGateway,
    clock: Clock,
    ids: IdFactory,
    *,
    contacts_per_location: int = 300,
    seed: int = DEMO_SEED,
    ai: AIProvider | None = None,
) -> SeedReport:
    """Create whatever part of the demo data is missing; return what was created.

    ``ai`` scores the contacts' warmness; the offline heuristic provider by
    default (deterministic and fast — a remote model would make the demo
    neither).
    """
    now = clock.now()
    scorer = ai or HeuristicProvider(clock=clock)
    counts: dict[str, int] = {}

    def bump(name: str, n: int = 1) -> None:
        counts[name] = counts.get(name, 0) + n

    # Locations, staff, grants and IP rules go through the same use cases as the
    # admin API and the CLI (each audited as the demo seeder, with its events);
    # the backdated records are one history import per location (one use case).
    services = bootstrap(gateway, clock=clock, ids=ids)
    access = services.access
    history = HistoryImportService.of(services)
    locations: dict[str, Location] = {}
    for spec in DEMO_LOCATIONS:
        try:
            locations[spec.code] = await access.find_location(spec.code)
        except NotFound:
            locations[spec.code] = await access.create_location(
                _seeder(""),
                CreateLocation(code=spec.code, name=spec.name, timezone=spec.timezone),
            )
            bump("locations")
    async with gateway.unit_of_work(None) as uow:
        seeded_grants = bool(await uow.permissions.all())
    if not seeded_grants:
        await access.seed_permissions(_seeder(locations[DEMO_LOCATIONS[0].code].id))
    for email, (name, roles) in DEMO_USERS.items():
        async with gateway.unit_of_work(None) as uow:
            try:
                user: StaffUser | None = await uow.users.get_by_email(email)
            except NotFound:
                user = None
            held = (
                set()
                if user is None
                else {m.location_id for m in await uow.memberships.for_user(user.id)}
            )
        if user is None:
            bump("users")
        for code, role in roles.items():
            if locations[code].id in held:
                continue
            await access.add_user(
                _seeder(locations[code].id), AddUser(email=email, role=role, name=name)
            )
            bump("memberships")

    owner_id = await _user_id(gateway, "owner@avatar-imaging.example")
    for index, spec in enumerate(DEMO_LOCATIONS):
        location = locations[spec.code]
        async with gateway.unit_of_work(location.id) as uow:
            present = {r.cidr for r in await uow.ip_rules.active()}
        for cidr in DEMO_CIDRS:
            if cidr not in present:
                await access.allow_ip(
                    _seeder(location.id), AllowIp(cidr=cidr, description="demo: this machine")
                )
                bump("ip_rules")
        async with gateway.unit_of_work(location.id) as uow:
            has_contacts = await uow.contacts.count(ContactQuery(limit=1)) > 0
        if not has_contacts:
            made = await _seed_records(
                history,
                location,
                spec,
                owner_id,
                now,
                # Deterministic demo data, not security: a seeded PRNG is the point.
                random.Random(seed + index),  # noqa: S311 - reproducible demo data, not security
                contacts_per_location,
                scorer,
            )
            for name, n in made.items():
                bump(name, n)
    return SeedReport(**counts)


def _seeder(location_id: str) -> Context:
    """The demo seeder's context: a system actor, audited as ``DEMO`` ``crm demo seed``."""
    return Context.system(location_id, request_method="DEMO", request_path="crm demo seed")


async def _user_id(gateway: DatabaseGateway, email: str) -> str:
    async with gateway.unit_of_work(None) as uow:
        return (await uow.users.get_by_email(email)).id


def _phone(rng: random.Random) -> str | None:
    candidate = f"+614{rng.randrange(10_000_000, 99_999_999)}"
    try:
        return parse_phone(candidate)
    except ValidationError:
        return None


async def _seed_records(
    history: HistoryImportService,
    location: Location,
    spec: DemoLocation,
    owner_id: str,
    now: datetime,
    rng: random.Random,
    how_many: int,
    scorer: AIProvider,
) -> dict[str, int]:
    start = now - timedelta(days=90)
    # Creation times first, sorted, so ids (time-sortable) follow creation order.
    moments = sorted(start + timedelta(seconds=rng.uniform(0, 90 * 86400)) for _ in range(how_many))
    ids = SeededIds(rng)
    contacts: list[Contact] = []
    touchpoints: list[Touchpoint] = []
    bookings: list[Booking] = []
    tasks: list[Task] = []
    messages: list[SmsMessage] = []
    statuses, weights = zip(*_STATUS_WEIGHTS, strict=True)
    for n, created in enumerate(moments):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        phone = _phone(rng) if rng.random() < 0.9 else None
        email = (
            f"{first}.{last}.{n}@example.com".lower() if rng.random() < 0.85 or not phone else None
        )
        status = rng.choices(statuses, weights)[0]
        sms_opt_in = phone is not None and rng.random() < 0.7
        contact = Contact(
            id=ids.at(created),
            tenant_id=location.id,
            first_name=first,
            last_name=last,
            email=email,
            phone=phone,
            source=rng.choice(_SOURCES),
            status=status,
            warmness=rng.randrange(0, 101),
            tags=rng.sample(
                ("mri", "referral", "vip", "follow-up", "new-patient"), rng.randrange(3)
            ),
            email_opt_in=email is not None and rng.random() < 0.6,
            sms_opt_in=sms_opt_in,
            service_interest=rng.choice(_SERVICES),
            created_at=created,
            updated_at=created,
        )
        contacts.append(contact)
        for k in range(rng.randrange(1, 5)):
            when = created + timedelta(hours=rng.uniform(0, 24 * 10) * (k + 1))
            if when > now:
                continue
            touchpoints.append(
                Touchpoint(
                    id=ids.at(when),
                    tenant_id=location.id,
                    contact_id=contact.id,
                    kind=rng.choice(
                        (
                            TouchpointKind.AD_CLICK,
                            TouchpointKind.PAGE_VIEW,
                            TouchpointKind.FORM_SUBMIT,
                            TouchpointKind.EMAIL_OPENED,
                            TouchpointKind.CALL_INBOUND,
                        )
                    ),
                    channel=rng.choice((Channel.WEB, Channel.EMAIL, Channel.PHONE, Channel.SOCIAL)),
                    occurred_at=when,
                    metadata={"utm_source": rng.choice(("facebook", "google", "instagram"))},
                    created_at=when,
                )
            )
        if status in (ContactStatus.BOOKED, ContactStatus.PATIENT) or rng.random() < 0.15:
            starts = created + timedelta(days=rng.uniform(1, 30))
            starts = starts.replace(minute=0, second=0, microsecond=0)
            if starts < now:
                booking_status = rng.choices(
                    (BookingStatus.COMPLETED, BookingStatus.NO_SHOW, BookingStatus.CANCELLED),
                    (75, 12, 13),
                )[0]
            else:
                booking_status = rng.choice((BookingStatus.PENDING, BookingStatus.CONFIRMED))
            booking = Booking(
                id=ids.at(created + timedelta(minutes=5)),
                tenant_id=location.id,
                contact_id=contact.id,
                service_type=contact.service_interest or "MRI",
                starts_at=starts,
                ends_at=starts + timedelta(minutes=45),
                status=booking_status,
                source="demo",
                created_at=created + timedelta(minutes=5),
                updated_at=created + timedelta(minutes=5),
            )
            bookings.append(booking)
            if phone is not None and sms_opt_in:
                sent = min(starts - timedelta(days=1), now)
                messages.append(
                    SmsMessage(
                        id=ids.at(sent),
                        tenant_id=location.id,
                        contact_id=contact.id,
                        direction=SmsDirection.OUTBOUND,
                        from_number=spec.phone,
                        to_number=phone,
                        body=f"Reminder: your {booking.service_type} at {spec.name} is "
                        f"{starts:%a %d %b %H:%M}. Reply Y to confirm or C to cancel.",
                        status=SmsStatus.DELIVERED,
                        provider="demo",
                        booking_id=booking.id,
                        created_at=sent,
                        sent_at=sent,
                    )
                )
                if rng.random() < 0.6:
                    reply_at = sent + timedelta(minutes=rng.uniform(2, 240))
                    if reply_at <= now:
                        text, intent = rng.choice(_REPLIES)
                        messages.append(
                            SmsMessage(
                                id=ids.at(reply_at),
                                tenant_id=location.id,
                                contact_id=contact.id,
                                direction=SmsDirection.INBOUND,
                                from_number=phone,
                                to_number=spec.phone,
                                body=text,
                                status=SmsStatus.RECEIVED,
                                provider="demo",
                                intent=intent,
                                intent_confidence=0.9,
                                booking_id=booking.id,
                                created_at=reply_at,
                            )
                        )
        if rng.random() < 0.3:
            task_created = created + timedelta(hours=1)
            done = task_created < now - timedelta(days=7) and rng.random() < 0.6
            tasks.append(
                Task(
                    id=ids.at(task_created),
                    tenant_id=location.id,
                    title=rng.choice(_TASK_TITLES),
                    contact_id=contact.id,
                    assignee_id=owner_id if rng.random() < 0.3 else None,
                    status=TaskStatus.DONE
                    if done
                    else rng.choice((TaskStatus.OPEN, TaskStatus.IN_PROGRESS)),
                    priority=rng.choice(tuple(TaskPriority)),
                    due_at=task_created + timedelta(days=rng.randrange(1, 8)),
                    completed_at=task_created + timedelta(days=1) if done else None,
                    created_at=task_created,
                    updated_at=task_created,
                )
            )
    messages += _first_replies(contacts, spec, now, rng)  # its draws come after all others
    contacts = await _scored(scorer, contacts, touchpoints, bookings, now)
    # One use case: permission, one audit entry and one event with the records.
    return await history.restore(
        _seeder(location.id),
        f"demo-{spec.code}",
        History(
            contacts=contacts,
            touchpoints=touchpoints,
            bookings=bookings,
            tasks=tasks,
            sms=messages,
        ),
    )


def _first_replies(
    contacts: Sequence[Contact], spec: DemoLocation, now: datetime, rng: random.Random
) -> list[SmsMessage]:
    """Reception's first text to most leads past ``new``, minutes to hours after they arrived.

    So the first-response report has something to show; drawn after everything
    else, so the rest of the demo data stays as it was.
    """
    ids = SeededIds(rng)
    replies = []
    for contact in contacts:
        if contact.phone is None or contact.status is ContactStatus.NEW or rng.random() < 0.2:
            continue
        sent = contact.created_at + timedelta(minutes=rng.lognormvariate(3.5, 1.0))
        if sent > now:
            continue
        replies.append(
            SmsMessage(
                id=ids.at(sent),
                tenant_id=contact.tenant_id,
                contact_id=contact.id,
                direction=SmsDirection.OUTBOUND,
                from_number=spec.phone,
                to_number=contact.phone,
                body=f"Hi {contact.first_name}, thanks for your enquiry with {spec.name}. "
                "When suits you for a call?",
                status=SmsStatus.DELIVERED,
                provider="demo",
                created_at=sent,
                sent_at=sent,
            )
        )
    return replies


async def _scored(
    scorer: AIProvider,
    contacts: Sequence[Contact],
    touchpoints: Sequence[Touchpoint],
    bookings: Sequence[Booking],
    now: datetime,
) -> list[Contact]:
    """Contacts with the warmness (and reasons) the provider gives their seeded history."""
    touches: dict[str, list[Touchpoint]] = {}
    for touchpoint in touchpoints:
        touches.setdefault(touchpoint.contact_id, []).append(touchpoint)
    booked: dict[str, list[Booking]] = {}
    for booking in bookings:
        booked.setdefault(booking.contact_id, []).append(booking)
    scored = []
    for contact in contacts:
        profile = lead_profile(contact, touches.get(contact.id, ()), booked.get(contact.id, ()))
        try:
            assessment = await scorer.analyze_warmness(profile, now)
        except Unavailable:
            # A provider that is down leaves the seeded random score (no reasons).
            scored.append(contact)
            continue
        scored.append(
            attrs.evolve(contact, warmness=assessment.score, warmness_reasons=assessment.reasons)
        )
    return scored


#: How the README runs ``crm`` (from the checkout, through uv): the token hint uses it.
CRM_COMMAND = "uv run --frozen --package crm-http-litestar crm"


async def announce_demo(runtime: CrmRuntime, base_url: str) -> str:
    """Seed the demo (idempotent), then print the URL, the docs and a ready ``curl`` line."""
    report = await seed_demo(runtime.gateway, runtime.clock, runtime.ids)
    owner = await _user_id(runtime.gateway, "owner@avatar-imaging.example")
    async with runtime.gateway.unit_of_work(None) as uow:
        sydney = await uow.locations.get_by_code("sydney")
    # A longer-lived demo token; the idle logoff still ends it after inactivity.
    issued = await runtime.sessions.open(owner, sydney.id, ttl=timedelta(hours=8))
    made = sum(attrs.asdict(report).values())
    lines = [
        "",
        f"Avatar Imaging CRM demo ({f'seeded {made} records' if made else 'data present'})",
        f"  API:   {base_url}/api",
        f"  Docs:  {base_url}/schema",
        f"  Staff console: {base_url}/console (one-click sign-in as each demo user)",
        "  Try:",
        f"    curl -H 'Authorization: Bearer {issued.token}' '{base_url}/api/contacts?limit=5'",
        # `crm` lives in the project's virtual environment, not on PATH: print the command
        # the README runs `crm serve --demo` with, or the hint fails with "command not found".
        f"  More tokens: {CRM_COMMAND} token reception.sydney@avatar-imaging.example"
        " --location sydney",
        f"  (session ends after {runtime.settings.session_idle_timeout} s without use)",
        *await _webhook_lines(runtime, base_url, sydney),
        "",
    ]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


async def _webhook_lines(runtime: CrmRuntime, base_url: str, sydney: Location) -> list[str]:
    """The demo's webhook URLs, and a patient's reply to try (SMS go to the logging sender)."""
    messaging = runtime.messaging
    sms_key = messaging.sms_webhook_keys.get(sydney.code, "")
    lines = [
        f"  SMS:   sent through the {messaging.sms_provider or 'no'} sender"
        " (CRM_SMS_PROVIDER; `log` prints one line per SMS and sends nothing)",
        "  Webhooks (sydney):",
        f"    ClickSend inbound SMS: {base_url}/webhooks/sms/clicksend?key={sms_key}",
        f"    ManyChat:              {base_url}/webhooks/manychat"
        f"  (header X-CRM-Key: {messaging.manychat_keys.get(sydney.code, '')})",
        f"    Wix Bookings:          {base_url}/webhooks/wix"
        + ("" if messaging.wix_public_key else "  (set CRM_WIX_PUBLIC_KEY and CRM_WIX_SITES)"),
    ]
    patient = await _patient_with_a_booking(runtime, sydney)
    clinic = messaging.sms_numbers.get(sydney.code)
    if patient is not None and clinic is not None and sms_key:
        lines += [
            "  Try a patient's reply (cancels their next booking; STOP opts them out):",
            f"    curl -d from='{patient}' -d to='{clinic}' -d body=Cancel"
            f" -d message_id=demo-$(date +%s) '{base_url}/webhooks/sms/clicksend?key={sms_key}'",
        ]
    return lines


async def _patient_with_a_booking(runtime: CrmRuntime, location: Location) -> str | None:
    """The phone of a sydney contact with an upcoming open booking, if the demo has one."""
    now = runtime.clock.now()
    async with runtime.gateway.unit_of_work(location.id) as uow:
        page = await uow.bookings.list(BookingQuery(starts_from=now, limit=100))
        for booking in sorted(page.items, key=lambda b: b.starts_at):
            if booking.status not in OPEN_STATUSES:
                continue
            contact = await uow.contacts.get(booking.contact_id)
            if contact.phone is not None:
                return contact.phone
    return None


__all__ = [
    "CRM_COMMAND",
    "DEMO_CIDRS",
    "DEMO_LOCATIONS",
    "DEMO_USERS",
    "SeedReport",
    "announce_demo",
    "seed_demo",
]
