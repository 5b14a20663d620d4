"""The report's definitions (DOMAIN.md, "What supervisors are judged on"), one test each,
on a small hand-built data set whose figures are worked out by hand in the comments.

Rows go straight into the test database under codes of our own (a random tag), so no
other test's petitions can leak in. The directory of this module:

    territory PRV (province)
    └── CITY (city): CITY-XFJ (petition bureau), CITY-HR (department)
        ├── CTY (county): CTY-XFJ (bureau), CTY-HR (department), CTY-COURT (court),
        │                 CTY-T1 (township; its escalation parent is CTY-XFJ)
        └── CTY2 (county): CTY2-HR (department)

    lines: CITY-XFJ -> CTY-XFJ;  CITY-HR -> CTY-HR, CTY2-HR  (the township heads none)

Each definition has a month of its own (petitions registered in it, Beijing time), and
every report is taken as of 1 December 2025, when every deadline used here has passed.
A deadline "24:00 on 20 June" is stored as 00:00 on 21 June, as the workflow stores it.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.tables import Escalation, Petition, PetitionEvent, Unit
from reports.metrics import RATE_BY_KEY, Figures, RollUp, UnknownUnitError, load_report_tree
from reports.periods import parse_period
from reports.report import Report, build_report
from tests.cli import petition
from tests.desk_helpers import OPAQUE_PERSONAL_DATA

BJ = ZoneInfo("Asia/Shanghai")
AS_OF = datetime(2025, 12, 1, tzinfo=BJ)
MAY, JUNE, JULY, AUGUST, SEPTEMBER = (parse_period(f"2025-{m:02d}") for m in (5, 6, 7, 8, 9))
TERRITORY, LINE = RollUp.TERRITORY, RollUp.LINE


def bj(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BJ)


Event = tuple[str, datetime] | tuple[str, datetime, dict[str, Any]]


class Book:
    """Builds the rows of this module's private directory and petitions."""

    def __init__(self, session: AsyncSession):
        self.session = session
        self.tag = uuid.uuid4().hex[:6].upper()
        self.seq = count(1)
        self.chains: dict[str, list[dict[str, str]]] = {}

    def code(self, short: str) -> str:
        return f"D{self.tag}-{short}"

    def territory(self, short: str, level: str, inside: str | None = None) -> None:
        chain = list(self.chains[inside]) if inside else []
        self.chains[short] = [*chain, {"code": self.code(short), "name": f"{short} area",
                                       "level": level}]

    def unit(self, short: str, kind: str, territory: str, *, level: str = "county",
             line: str | None = None, parent: str | None = None) -> None:
        self.session.add(Unit(
            code=self.code(short), name=f"Unit {short}", kind=kind, level=level,
            parent_code=self.code(parent) if parent else None,
            line_parent_code=self.code(line) if line else None,
            territory=self.chains[territory]))

    def to(self, unit: str, **more: Any) -> dict[str, Any]:
        """A transfer's detail: the target unit (and `assigned` for 交办)."""
        return {"to_unit": self.code(unit), "assigned": False, **more}

    async def petition(self, unit: str, registered: datetime, *, holder: str | None = None,
                       responsible: str | None = None, stage: str = "registered",
                       events: tuple[Event, ...] = (), refused: tuple[Event, ...] = (),
                       **columns: Any) -> Petition:
        n = next(self.seq)
        wid = f"petition-def-{self.tag}-{n}"
        row = Petition(
            intake_id=f"def-{self.tag}-{n}", workflow_id=wid, registration_no=f"{wid}-no",
            registered_unit=self.code(unit), holding_unit=self.code(holder or unit),
            responsible_unit=self.code(responsible) if responsible else None,
            channel="visit", category="other", law_related=False, profile="national",
            persons=1, matter_key=f"m-{self.tag}-{n}", **OPAQUE_PERSONAL_DATA,
            stage=stage, received_at=registered, registered_at=registered,
            **columns)
        self.session.add(row)
        await self.session.flush()
        for seq, event in enumerate(events, start=1):
            self._event(row, seq, event, accepted=True)
        for seq, event in enumerate(refused, start=100):
            self._event(row, seq, event, accepted=False)
        return row

    def _event(self, row: Petition, seq: int, event: Event, accepted: bool) -> None:
        action, at = event[0], event[1]
        detail = event[2] if len(event) == 3 else {}
        # The actor's unit is deliberately none of the units: a supervising leader may act
        # for the holding unit from another, so the report must not read it.
        self.session.add(PetitionEvent(
            petition_id=row.id, workflow_id=row.workflow_id,
            idempotency_key=f"{row.workflow_id}:{seq}:{action}", seq=seq, action=action,
            actor_id="x", actor_role="handler", actor_unit=self.code("ELSEWHERE"),
            accepted=accepted, refusal=None if accepted else "refused", detail=detail, at=at))

    def escalation(self, row: Petition, clock: str, unit: str, due: datetime) -> None:
        self.session.add(Escalation(
            idempotency_key=f"{row.workflow_id}:esc:{clock}:{uuid.uuid4().hex[:6]}",
            petition_id=row.id, clock=clock, level=1, unit_code=self.code(unit),
            due_at=due, escalated_at=due))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def book(sessions: async_sessionmaker[AsyncSession]) -> Book:
    async with sessions() as session:
        b = Book(session)
        b.territory("PRV", "province")
        b.territory("CITY", "city", inside="PRV")
        b.territory("CTY", "county", inside="CITY")
        b.territory("CTY2", "county", inside="CITY")
        b.unit("CITY-XFJ", "petition_bureau", "CITY", level="city")
        b.unit("CITY-HR", "government_department", "CITY", level="city")
        await session.flush()
        b.unit("CTY-XFJ", "petition_bureau", "CTY", line="CITY-XFJ", parent="CITY-XFJ")
        b.unit("CTY-HR", "government_department", "CTY", line="CITY-HR", parent="CITY-HR")
        b.unit("CTY-COURT", "court", "CTY")
        b.unit("CTY2-HR", "government_department", "CTY2", line="CITY-HR", parent="CITY-HR")
        await session.flush()
        b.unit("CTY-T1", "township", "CTY", level="township", parent="CTY-XFJ")
        await session.flush()
        for build in (_one_time_resolution, _acceptance, _routing, _counts, _roll_ups):
            await build(b)
        await session.commit()
    return b


async def report(sessions: async_sessionmaker[AsyncSession], book: Book, short: str,
                 month: Any, by: RollUp = TERRITORY) -> Report:
    return await build_report(sessions, book.code(short), month, AS_OF, by=by)


def figures_of(rep: Report, book: Book, short: str, scope: str = "total") -> Figures:
    return next(r.figures for r in rep.rows
                if r.unit == book.code(short) and r.scope == scope)


def rate(figures: Figures, key: str) -> tuple[int, int]:
    r = RATE_BY_KEY[key]
    return getattr(figures, r.numerator), getattr(figures, r.denominator)


# ------------------------------------------------------------ one-time resolution (May)


async def _one_time_resolution(b: Book) -> None:
    hr: dict[str, Any] = {"holder": "CTY-HR", "responsible": "CTY-HR"}
    accepted = ("accept", bj(2025, 5, 6))
    # a: opinion on 20 May, the review window passed: closed, resolved the first time.
    await b.petition("CTY-HR", bj(2025, 5, 5, 9), stage="closed", outcome="resolved",
                     replied_at=bj(2025, 5, 20), **hr,
                     events=(accepted, ("reply", bj(2025, 5, 20)),
                             ("review_window_lapsed", bj(2025, 6, 20))))
    # b: opinion, review, re-review: concluded -- closed, but not the first time.
    await b.petition("CTY-HR", bj(2025, 5, 5, 10), stage="closed", outcome="concluded",
                     replied_at=bj(2025, 5, 20), reviewed=True, **hr,
                     events=(accepted, ("reply", bj(2025, 5, 20))))
    # c: opinion, then a request for review still under way: not resolved the first time.
    await b.petition("CTY-HR", bj(2025, 5, 5, 11), stage="under_review",
                     replied_at=bj(2025, 5, 20), reviewed=True, **hr,
                     events=(accepted, ("reply", bj(2025, 5, 20))))
    # d: opinion on 20 November, its review window still open: pending, left out.
    await b.petition("CTY-HR", bj(2025, 5, 30, 9), stage="replied",
                     replied_at=bj(2025, 11, 20), **hr,
                     events=(accepted, ("reply", bj(2025, 11, 20))))
    # e, f, g: declined, diverted, and a concluded matter declined at registration: closed
    # at once without review, but none received a handling opinion -- not in the rate.
    await b.petition("CTY-HR", bj(2025, 5, 7, 9), stage="closed", outcome="not_accepted",
                     events=(("decline", bj(2025, 5, 8)),))
    await b.petition("CTY-HR", bj(2025, 5, 7, 10), stage="closed", outcome="diverted",
                     events=(("divert", bj(2025, 5, 9)),))
    await b.petition("CTY-HR", bj(2025, 5, 7, 11), stage="closed", outcome="not_accepted",
                     events=(("decline_concluded_matter", bj(2025, 5, 7, 11)),))


async def test_one_time_resolution_leaves_out_declined_and_diverted(sessions, book):
    # Handling opinions settled: a (resolved), b (concluded after review), c (under review)
    # -> 3; closed without a request for review: a -> 1. d is pending; e, f, g got no
    # opinion. (Closed without review / closed -- the old definition -- was a, e, f, g of
    # a, b, e, f, g: 4/5.)
    county = (await report(sessions, book, "CTY", MAY)).total.figures
    assert rate(county, "one_time_resolution") == (1, 3)
    assert county.closed == 5 and county.registered == 7


# ------------------------------------------------------------- timely acceptance (June)


async def _acceptance(b: Book) -> None:
    to_hr = ("transfer", bj(2025, 6, 5), b.to("CTY-HR"))
    hr: dict[str, Any] = {"holder": "CTY-HR", "responsible": "CTY-HR"}
    # p1: routed to CTY-HR on 5 June; CTY-HR's clock runs from its receipt to 24:00 on 20
    # June; CTY-HR accepts on 25 June: LATE, for CTY-HR. (Judged on the transfer, as
    # before, it was timely.)
    await b.petition("CTY-XFJ", bj(2025, 6, 2, 9), stage="in_handling", **hr,
                     acceptance_due=bj(2025, 6, 21),
                     events=(to_hr, ("accept", bj(2025, 6, 25))))
    # p2: the same, accepted on 18 June: timely, for CTY-HR.
    await b.petition("CTY-XFJ", bj(2025, 6, 2, 10), stage="in_handling", **hr,
                     acceptance_due=bj(2025, 6, 21),
                     events=(to_hr, ("accept", bj(2025, 6, 18))))
    # p3: the bureau decides itself (declines) on 10 June, within its routing clock (24:00
    # on 18 June): timely, for CTY-XFJ.
    await b.petition("CTY-XFJ", bj(2025, 6, 3, 9), stage="closed", outcome="not_accepted",
                     acceptance_due=bj(2025, 6, 19), events=(("decline", bj(2025, 6, 10)),))
    # p4: routed to CTY-HR on 5 June, never decided; its clock ran out on 20 June: a MISS
    # for CTY-HR.
    await b.petition("CTY-XFJ", bj(2025, 6, 2, 11), holder="CTY-HR",
                     acceptance_due=bj(2025, 6, 21), events=(to_hr,))
    # p5: still at the bureau, unrouted past its routing deadline: a routing miss, not an
    # acceptance one (nobody has decided on acceptance yet).
    await b.petition("CTY-XFJ", bj(2025, 6, 20, 9), acceptance_due=bj(2025, 7, 6))
    # p6: to CTY-HR on 4 June, which objects on 6 June (back to the bureau), then to the
    # court on 8 June (its clock to 24:00 on 23 June); the court accepts on 30 June: LATE,
    # for CTY-COURT.
    await b.petition("CTY-XFJ", bj(2025, 6, 2, 12), holder="CTY-COURT",
                     responsible="CTY-COURT", stage="in_handling",
                     acceptance_due=bj(2025, 6, 24),
                     events=(("transfer", bj(2025, 6, 4), b.to("CTY-HR")),
                             ("reject_transfer", bj(2025, 6, 6)),
                             ("transfer", bj(2025, 6, 8), b.to("CTY-COURT")),
                             ("accept", bj(2025, 6, 30))))
    # p7: registered at CTY-HR itself, accepted in two days: timely, for CTY-HR.
    await b.petition("CTY-HR", bj(2025, 6, 10, 9), stage="in_handling", **hr,
                     acceptance_due=bj(2025, 6, 26), events=(("accept", bj(2025, 6, 12)),))
    # p8: the bureau routed it late (its routing deadline, 24:00 on 17 June, escalated);
    # CTY-HR, receiving it on 20 June, accepts on 22 June within its own clock (to 24:00 on
    # 5 July): timely, for CTY-HR -- the bureau's lateness is its routing rate's.
    late = await b.petition("CTY-XFJ", bj(2025, 6, 2, 13), stage="in_handling", **hr,
                            acceptance_due=bj(2025, 7, 6),
                            events=(("transfer", bj(2025, 6, 20), b.to("CTY-HR")),
                                    ("accept", bj(2025, 6, 22))))
    b.escalation(late, "routing", "CTY-XFJ", bj(2025, 6, 18))


async def test_timely_acceptance_judges_the_unit_that_decided_from_its_receipt(sessions, book):
    county = await report(sessions, book, "CTY", JUNE)
    # CTY-HR: p2, p7, p8 timely; p1 late; p4 missed -> 3/5.
    assert rate(figures_of(county, book, "CTY-HR"), "timely_acceptance") == (3, 5)
    # CTY-XFJ: p3 (its own decline) -> 1/1; p5 is not in it.
    assert rate(figures_of(county, book, "CTY-XFJ"), "timely_acceptance") == (1, 1)
    # CTY-COURT: p6, late -> 0/1.
    assert rate(figures_of(county, book, "CTY-COURT"), "timely_acceptance") == (0, 1)
    assert rate(county.total.figures, "timely_acceptance") == (4, 7)


# ---------------------------------------------------------------- timely routing (July)


async def _routing(b: Book) -> None:
    hr: dict[str, Any] = {"holder": "CTY-HR"}
    # r1: routed by CTY-XFJ on 4 July, in time.
    await b.petition("CTY-XFJ", bj(2025, 7, 1, 9), **hr, acceptance_due=bj(2025, 7, 20),
                     events=(("transfer", bj(2025, 7, 4), b.to("CTY-HR")),))
    # r2: routed on 20 July after its routing deadline (24:00 on 16 July) expired: LATE.
    r2 = await b.petition("CTY-XFJ", bj(2025, 7, 1, 10), **hr, acceptance_due=bj(2025, 8, 5),
                          events=(("transfer", bj(2025, 7, 20), b.to("CTY-HR")),))
    b.escalation(r2, "routing", "CTY-XFJ", bj(2025, 7, 17))
    # r3: assigned (交办) on 10 July, in time.
    await b.petition("CTY-XFJ", bj(2025, 7, 1, 11), **hr, acceptance_due=bj(2025, 7, 26),
                     events=(("transfer", bj(2025, 7, 10), b.to("CTY-HR", assigned=True)),))
    # r4: held unrouted by the bureau past its routing deadline (24:00 on 4 August): a MISS.
    await b.petition("CTY-XFJ", bj(2025, 7, 20, 9), acceptance_due=bj(2025, 8, 5))
    # r5: the bureau accepts it itself: not routed, not in the rate (a refused transfer
    # attempt changes nothing).
    await b.petition("CTY-XFJ", bj(2025, 7, 21, 9), stage="in_handling",
                     responsible="CTY-XFJ", acceptance_due=bj(2025, 8, 6),
                     events=(("accept", bj(2025, 7, 25)),),
                     refused=(("transfer", bj(2025, 7, 22), b.to("CTY-HR")),))
    # r6: CTY-HR, a department, passes a misdirected case to the court: a transfer, but no
    # bureau's routing.
    await b.petition("CTY-HR", bj(2025, 7, 2, 9), holder="CTY-COURT",
                     acceptance_due=bj(2025, 7, 20),
                     events=(("transfer", bj(2025, 7, 4), b.to("CTY-COURT")),))
    # r7: routed on 4 July, returned by CTY-HR on 6 July, routed again on 8 July: one
    # routing by CTY-XFJ (its first transfer, in time), two transfers.
    await b.petition("CTY-XFJ", bj(2025, 7, 2, 10), holder="CTY-COURT",
                     acceptance_due=bj(2025, 7, 24),
                     events=(("transfer", bj(2025, 7, 4), b.to("CTY-HR")),
                             ("reject_transfer", bj(2025, 7, 6)),
                             ("transfer", bj(2025, 7, 8), b.to("CTY-COURT"))))
    # r8: the city bureau routes to the county bureau (4 July), which routes to CTY-HR (6
    # July); CTY-HR objects (8 July), the county bureau routes to the court (9 July). One
    # timely routing each for CITY-XFJ and CTY-XFJ; transfers: 1 and 2.
    await b.petition("CITY-XFJ", bj(2025, 7, 2, 11), holder="CTY-COURT",
                     acceptance_due=bj(2025, 7, 25),
                     events=(("transfer", bj(2025, 7, 4), b.to("CTY-XFJ")),
                             ("transfer", bj(2025, 7, 6), b.to("CTY-HR")),
                             ("reject_transfer", bj(2025, 7, 8)),
                             ("transfer", bj(2025, 7, 9), b.to("CTY-COURT"))))
    # r9: the city bureau routes late (its deadline, 24:00 on 16 July, escalated) on 18
    # July; the county bureau routes on 19 July, in time: that escalation is not its own.
    r9 = await b.petition("CITY-XFJ", bj(2025, 7, 1, 12), **hr, acceptance_due=bj(2025, 8, 4),
                          events=(("transfer", bj(2025, 7, 18), b.to("CTY-XFJ")),
                                  ("transfer", bj(2025, 7, 19), b.to("CTY-HR"))))
    b.escalation(r9, "routing", "CITY-XFJ", bj(2025, 7, 17))


async def test_timely_routing_is_each_bureaus_routing_within_its_period(sessions, book):
    city = await report(sessions, book, "CITY", JULY)
    # CTY-XFJ: r1, r3, r7, r8, r9 in time; r2 late; r4 unrouted past its deadline -> 5/7.
    county = figures_of(city, book, "CTY")
    assert rate(county, "timely_routing") == (5, 7)
    assert county.rate(RATE_BY_KEY["timely_routing"]) == pytest.approx(5 / 7)
    # CITY-XFJ: r8 in time, r9 late -> 1/2.
    assert rate(figures_of(city, book, "CITY-XFJ"), "timely_routing") == (1, 2)
    assert rate(city.total.figures, "timely_routing") == (6, 9)
    # CTY-HR's transfer (r6) is not a bureau's routing.
    hr = (await report(sessions, book, "CTY-HR", JULY)).total.figures
    assert rate(hr, "timely_routing") == (0, 0) and hr.transfers == 1


async def test_transfers_are_counted_for_the_unit_that_made_them(sessions, book):
    city = await report(sessions, book, "CITY", JULY)
    alone = (await report(sessions, book, "CTY-XFJ", JULY, by=LINE))
    # CTY-XFJ made r1, r2, r3 (one each), r7 (two), r8 (two), r9 (one): 8; not r5's
    # refused one. CITY-XFJ made r8's and r9's first: 2. CTY-HR made r6's: 1.
    assert [r.unit for r in alone.rows] == [book.code("CTY-XFJ")]  # no line below it
    assert alone.total.figures.transfers == 8
    assert figures_of(city, book, "CITY-XFJ").transfers == 2
    assert figures_of(city, book, "CTY").transfers == 9
    assert city.total.figures.transfers == 11


# ----------------------------------------------- transfer and diversion counts (August)


async def _counts(b: Book) -> None:
    # c1: the bureau transfers to CTY-HR, which diverts it (to the court, litigation).
    await b.petition("CTY-XFJ", bj(2025, 8, 1, 9), holder="CTY-HR", stage="closed",
                     outcome="diverted",
                     events=(("transfer", bj(2025, 8, 3), b.to("CTY-HR")),
                             ("divert", bj(2025, 8, 10), {"organ": b.code("CTY-COURT")})))
    # c2: the bureau diverts it itself; a refused transfer before counts for nothing.
    await b.petition("CTY-XFJ", bj(2025, 8, 1, 10), stage="closed", outcome="diverted",
                     events=(("divert", bj(2025, 8, 4), {"organ": b.code("CTY-COURT")}),),
                     refused=(("transfer", bj(2025, 8, 2), b.to("CTY-HR")),))
    # c3: transferred, objected to, transferred again: two transfers by the bureau.
    await b.petition("CTY-XFJ", bj(2025, 8, 1, 11), holder="CTY-COURT",
                     responsible="CTY-COURT", stage="in_handling",
                     events=(("transfer", bj(2025, 8, 3), b.to("CTY-HR")),
                             ("reject_transfer", bj(2025, 8, 5)),
                             ("transfer", bj(2025, 8, 6), b.to("CTY-COURT")),
                             ("accept", bj(2025, 8, 7))))
    # c4: the township passes a case to CTY-HR: one transfer by the township.
    await b.petition("CTY-T1", bj(2025, 8, 2, 9), holder="CTY-HR",
                     events=(("transfer", bj(2025, 8, 4), b.to("CTY-HR")),))
    # c5: registered at 23:30 on 31 August (an August petition), transferred in September:
    # counted with August's cohort.
    await b.petition("CTY-XFJ", bj(2025, 8, 31, 23, 30), holder="CTY-HR",
                     events=(("transfer", bj(2025, 9, 2), b.to("CTY-HR")),))


async def test_transfer_and_diversion_counts(sessions, book):
    county = await report(sessions, book, "CTY", AUGUST)
    bureau, hr = figures_of(county, book, "CTY-XFJ"), figures_of(county, book, "CTY-HR")
    # Transfers: bureau c1 + c3 (two) + c5 = 4; township c4 = 1. Diversions: the bureau's
    # c2, CTY-HR's c1.
    assert (bureau.transfers, bureau.diversions) == (4, 1)
    assert (hr.transfers, hr.diversions) == (0, 1)
    assert figures_of(county, book, "CTY-T1").transfers == 1
    assert (county.total.figures.transfers, county.total.figures.diversions) == (5, 2)
    september = (await report(sessions, book, "CTY", SEPTEMBER)).total.figures
    assert september.transfers == 0


# ------------------------------------------------------------------ roll-ups (September)


async def _roll_ups(b: Book) -> None:
    # One petition per unit, accepted; those of the township and CTY2-HR late.
    for n, (unit, late) in enumerate((("CTY-XFJ", False), ("CTY-HR", False),
                                      ("CTY-COURT", False), ("CTY-T1", True),
                                      ("CITY-XFJ", False), ("CITY-HR", False),
                                      ("CTY2-HR", True)), start=1):
        await b.petition(unit, bj(2025, 9, n, 9), responsible=unit, stage="in_handling",
                         acceptance_due=bj(2025, 9, n + 15),
                         events=(("accept", bj(2025, 9, n + (20 if late else 2))),))


async def test_territory_roll_up_covers_every_unit_located_in_it(sessions, book):
    county = await report(sessions, book, "CTY", SEPTEMBER)
    codes = [book.code(s) for s in ("CTY", "CTY-XFJ", "CTY-HR", "CTY-COURT", "CTY-T1")]
    assert [r.unit for r in county.rows] == codes
    assert [r.node for r in county.rows] == ["territory"] + ["unit"] * 4
    # Bureau, department, court and township: 4 petitions, the township's late -> 3/4.
    assert county.total.figures.registered == 4
    assert rate(county.total.figures, "timely_acceptance") == (3, 4)
    # The county bureau stands for its county.
    via_bureau = await report(sessions, book, "CTY-XFJ", SEPTEMBER)
    assert via_bureau.unit == book.code("CTY") and via_bureau.total.figures == \
        county.total.figures
    # The city: its own two units and both counties -> 7, of which 5 timely.
    city = await report(sessions, book, "CITY", SEPTEMBER)
    assert [r.unit for r in city.rows] == [book.code(s) for s in
                                           ("CITY", "CITY-XFJ", "CITY-HR", "CTY", "CTY2")]
    assert rate(city.total.figures, "timely_acceptance") == (5, 7)
    province = await report(sessions, book, "PRV", SEPTEMBER)
    assert province.total.figures.registered == 7
    # A unit that is not a bureau has nothing located in it: alone.
    alone = await report(sessions, book, "CTY-HR", SEPTEMBER)
    assert [r.unit for r in alone.rows] == [book.code("CTY-HR")]
    assert alone.total.figures.registered == 1


async def test_line_roll_up_covers_the_departments_of_the_line_below(sessions, book):
    # CITY-HR by line: itself, CTY-HR and CTY2-HR (2 timely of 3) -- not the county's
    # township, court or bureau.
    line = await report(sessions, book, "CITY-HR", SEPTEMBER, by=LINE)
    assert [(r.unit, r.scope) for r in line.rows] == [
        (book.code("CITY-HR"), "total"), (book.code("CITY-HR"), "own"),
        (book.code("CTY-HR"), "total"), (book.code("CTY2-HR"), "total")]
    assert line.total.figures.registered == 3
    assert rate(line.total.figures, "timely_acceptance") == (2, 3)
    # The bureau line: CITY-XFJ and CTY-XFJ; the township's escalation parent is the
    # county bureau, but it is in no line under it.
    bureaus = await report(sessions, book, "CITY-XFJ", SEPTEMBER, by=LINE)
    assert [r.unit for r in bureaus.rows] == [book.code(s) for s in
                                              ("CITY-XFJ", "CITY-XFJ", "CTY-XFJ")]
    assert bureaus.total.figures.registered == 2
    assert rate(bureaus.total.figures, "timely_acceptance") == (2, 2)


async def test_roll_up_refusals_name_the_problem(sessions, book):
    async with sessions() as session:
        with pytest.raises(UnknownUnitError, match="is a territory, not a unit"):
            await load_report_tree(session, book.code("CTY"), LINE)
        with pytest.raises(UnknownUnitError, match="unknown unit 'NOPE'"):
            await load_report_tree(session, "NOPE", TERRITORY)
        with pytest.raises(UnknownUnitError, match="unknown unit 'NOPE'"):
            await load_report_tree(session, "NOPE", LINE)


async def test_the_sample_directory_rolls_up_both_ways(sessions):
    """The sample directory (loaded by the fixture) records territories and lines."""
    async with sessions() as session:
        county = await load_report_tree(session, "QS-XFJ", TERRITORY)
        assert county.root == "QS" and county.names["QS"] == "青山县 Qingshan County"
        assert set(county.children["QS"]) == {
            "QS-XFJ", "QS-COURT", "QS-PROC", "QS-PSB", "QS-HRSS", "QS-NR", "QS-HURD",
            "QS-EE", "QS-T1", "QS-T2"}
        assert county.children["QS"][0] == "QS-XFJ"
        city = await load_report_tree(session, "YZ", TERRITORY)
        assert city.children["YZ"][-2:] == ["BS", "QS"]
        assert {"QS-T1", "BS-T2", "YZ-EE"} <= city.unit_codes
        hrss = await load_report_tree(session, "YZ-HRSS", LINE)
        assert sorted(hrss.unit_codes) == ["BS-HRSS", "QS-HRSS", "YZ-HRSS"]
        bureaus = await load_report_tree(session, "YZ-XFJ", LINE)
        assert sorted(bureaus.unit_codes) == ["BS-XFJ", "QS-XFJ", "YZ-XFJ"]


@pytest.mark.cli
async def test_report_command_by_territory_and_by_line(db_url, book):
    common = {"db_url": db_url, "address": "127.0.0.1:1", "task_queue": "unused"}
    argv = ["report", "--period", "2025-08", "--as-of", AS_OF.isoformat(), "--format", "json"]
    shown = await petition(*argv, "--unit", book.code("CTY"), **common)  # default: territory
    assert shown.code == 0, shown.err
    body = json.loads(shown.out)
    assert body["by"] == "territory" and body["rows"][0]["node"] == "territory"
    assert body["rows"][0]["counts"]["transfers"] == 5
    assert body["rows"][0]["counts"]["diversions"] == 2
    assert "timely_routing" in body["rows"][0]["rates"]
    assert "timely_routing" in body["definitions"]
    by_line = await petition(*argv, "--unit", book.code("CTY"), "--by", "line", **common)
    assert by_line.code == 2 and "is a territory, not a unit" in by_line.err
    table = await petition("report", "--unit", book.code("CTY-XFJ"), "--period", "2025-07",
                           "--as-of", AS_OF.isoformat(), **common)
    assert table.code == 0, table.err
    assert "Timely routing" in table.out and "by territory" in table.out
    assert "71.4% (5/7)" in table.out  # the county's routing, as above
