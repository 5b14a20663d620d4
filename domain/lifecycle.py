"""The petition lifecycle as data: (stage, action) -> next stage, guard, clocks, effects.

`PetitionWorkflow` executes this table and decides no transition anywhere else.
`petition diagram` renders it. Articles cite the Regulations on the Work of
Letters and Visits (2022) unless a row says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from domain.models import (
    OPEN_STAGES,
    Accept,
    Action,
    AddNote,
    Assign,
    ClockName,
    Command,
    ContractToLeader,
    DecideAssistance,
    DecideExtension,
    Decline,
    Divert,
    Outcome,
    ProgressReply,
    Rate,
    RecordHearing,
    RejectTransfer,
    RepeatVisit,
    Reply,
    RequestAssistance,
    RequestExtension,
    RequestReReview,
    RequestReview,
    ReReviewOpinion,
    ReviewOpinion,
    Role,
    ScheduleHearing,
    Stage,
    SystemCommand,
    Transfer,
    Withdraw,
)

R = Stage.REGISTERED
H = Stage.IN_HANDLING
RP = Stage.REPLIED
UR = Stage.UNDER_REVIEW
RR = Stage.REVIEW_REPLIED
URR = Stage.UNDER_RE_REVIEW
C = Stage.CLOSED

STAFF = frozenset({Role.HANDLER, Role.UNIT_HEAD, Role.LEADER})
HEADS = frozenset({Role.UNIT_HEAD, Role.LEADER})
# An intake clerk registers what the petitioner says at the window or on the phone.
PETITIONER_SIDE = frozenset({Role.PETITIONER, Role.INTAKE_CLERK})


class UnitRule(StrEnum):
    """Which unit the actor must belong to (petitioner-side roles are not unit-bound)."""

    HOLDING = "holding"  # the unit that currently holds the case
    RESPONSIBLE = "responsible"  # the unit that accepted it
    REVIEW_ORGAN = "review_organ"
    RE_REVIEW_ORGAN = "re_review_organ"
    CASE_UNIT = "case_unit"  # holding, responsible or reviewing unit
    NONE = "none"


class Effect(StrEnum):
    """Side effects a transition triggers; each is an idempotent activity."""

    NOTICE_PETITIONER = "notice_petitioner"
    NOTICE_RECEIVING_UNIT = "notice_receiving_unit"
    NOTICE_LEADER = "notice_leader"
    NOTICE_REVIEW_ORGAN = "notice_review_organ"
    TRANSFER_ORDER = "transfer_order"
    DIVERSION_ORDER = "diversion_order"
    BOOK_HEARING = "book_hearing"
    RECORD_HEARING = "record_hearing"
    FILE_ASSISTANCE = "file_assistance"
    DECIDE_ASSISTANCE = "decide_assistance"
    TERMINATION_REGISTRY = "termination_registry"


ALL_CLOCKS = tuple(ClockName)

# The clock of the unit that receives a case (at registration, by transfer, or when a
# transfer is returned). The table names it ACCEPTANCE; at a petition bureau it is the
# routing clock instead (Art. 22: the bureau forwards or assigns; Art. 23: a competent
# unit decides whether to accept). `clocks_to_start` makes that substitution.
RECEIPT_CLOCKS = frozenset({ClockName.ROUTING, ClockName.ACCEPTANCE})
ENTRY_CLOCKS = (ClockName.ACCEPTANCE, ClockName.PROCEDURAL_REPLY, ClockName.SETTLEMENT)


@dataclass(frozen=True)
class Transition:
    action: Action
    command: type[Command]
    from_stages: frozenset[Stage]
    to_stage: Stage | None  # None: the stage does not change
    roles: frozenset[Role]
    unit_rule: UnitRule
    article: str
    outcome: Outcome | None = None
    starts: tuple[ClockName, ...] = ()
    stops: tuple[ClockName, ...] = ()
    pauses: tuple[ClockName, ...] = ()
    resumes: tuple[ClockName, ...] = ()
    renews: tuple[ClockName, ...] = ()  # recurring clocks satisfied for one more period
    extends: tuple[ClockName, ...] = ()  # running clocks extended by an approved decision
    effects: tuple[Effect, ...] = ()
    counts_as_note: bool = False  # compacted in the workflow timeline (notes, repeat visits)
    description: str = ""
    system: bool = False  # driven by a clock, not a person

    def label(self) -> str:
        return self.action.value


def _row(
    action: Action,
    command: type[Command],
    from_stages: frozenset[Stage] | set[Stage],
    to_stage: Stage | None,
    roles: frozenset[Role] | set[Role],
    unit_rule: UnitRule,
    article: str,
    **extra: object,
) -> Transition:
    return Transition(
        action, command, frozenset(from_stages), to_stage, frozenset(roles), unit_rule, article,
        **extra,  # type: ignore[arg-type]
    )


TRANSITIONS: tuple[Transition, ...] = (
    _row(Action.ACCEPT, Accept, {R}, H, STAFF, UnitRule.HOLDING, "Art. 23",
         starts=(ClockName.HANDLING,),
         stops=(ClockName.ROUTING, ClockName.ACCEPTANCE, ClockName.PROCEDURAL_REPLY,
                ClockName.TRANSFER_OBJECTION),
         effects=(Effect.NOTICE_PETITIONER,),
         description="the holding unit accepts; written acceptance notice"),
    _row(Action.DECLINE, Decline, {R}, C, STAFF, UnitRule.HOLDING, "Art. 23",
         outcome=Outcome.NOT_ACCEPTED, stops=ALL_CLOCKS, effects=(Effect.NOTICE_PETITIONER,),
         description="not accepted, with a statutory reason; written notice citing it"),
    _row(Action.DIVERT, Divert, {R}, C, STAFF, UnitRule.HOLDING, "Art. 31 (诉访分离)",
         outcome=Outcome.DIVERTED, stops=ALL_CLOCKS,
         effects=(Effect.DIVERSION_ORDER, Effect.NOTICE_PETITIONER),
         description="matter for litigation, arbitration, review or discipline: leaves the track"),
    _row(Action.TRANSFER, Transfer, {R}, R, STAFF, UnitRule.HOLDING, "Art. 22-23",
         starts=(ClockName.ACCEPTANCE, ClockName.TRANSFER_OBJECTION),
         stops=(ClockName.ROUTING, ClockName.ACCEPTANCE, ClockName.TRANSFER_OBJECTION,
                ClockName.PROCEDURAL_REPLY),
         effects=(Effect.TRANSFER_ORDER, Effect.NOTICE_RECEIVING_UNIT, Effect.NOTICE_PETITIONER),
         description="transfer work order; the receiving unit's acceptance clock starts anew"),
    _row(Action.REJECT_TRANSFER, RejectTransfer, {R}, R, STAFF, UnitRule.HOLDING, "Art. 23",
         starts=(ClockName.ACCEPTANCE,),
         stops=(ClockName.ACCEPTANCE, ClockName.TRANSFER_OBJECTION),
         effects=(Effect.NOTICE_RECEIVING_UNIT,),
         description="the receiving unit objects within 5 working days; the case goes back "
                     "and the returning unit's clock starts anew"),
    _row(Action.ASSIGN, Assign, {R, H}, None, STAFF, UnitRule.CASE_UNIT, "Art. 33",
         description="a handler takes the case"),
    _row(Action.CONTRACT_TO_LEADER, ContractToLeader, {R, H}, None, HEADS, UnitRule.CASE_UNIT,
         "Art. 7 (领导包案)", effects=(Effect.NOTICE_LEADER,),
         description="a named leader takes on the case"),
    _row(Action.REQUEST_EXTENSION, RequestExtension, {H}, None, STAFF, UnitRule.RESPONSIBLE,
         "Art. 34", description="the handler asks the unit head for more time"),
    _row(Action.DECIDE_EXTENSION, DecideExtension, {H}, None, frozenset({Role.UNIT_HEAD}),
         UnitRule.RESPONSIBLE, "Art. 34", extends=(ClockName.HANDLING,),
         effects=(Effect.NOTICE_PETITIONER,),
         description="at most once, at most the profile's limit; the reason goes to the "
                     "petitioner"),
    _row(Action.SCHEDULE_HEARING, ScheduleHearing, {H, URR}, None, STAFF, UnitRule.CASE_UNIT,
         "Art. 34 / Art. 36", pauses=(ClockName.RE_REVIEW,), effects=(Effect.BOOK_HEARING,),
         description="public hearing with third-party officers; re-review time stops"),
    _row(Action.RECORD_HEARING, RecordHearing, {H, URR}, None, STAFF, UnitRule.CASE_UNIT,
         "Art. 34 / Art. 36", resumes=(ClockName.RE_REVIEW,), effects=(Effect.RECORD_HEARING,),
         description="the hearing's outcome; re-review time runs again"),
    _row(Action.REQUEST_ASSISTANCE, RequestAssistance, {H}, None, STAFF, UnitRule.RESPONSIBLE,
         "Judicial assistance rules", effects=(Effect.FILE_ASSISTANCE,),
         description="judicial or hardship assistance application"),
    _row(Action.DECIDE_ASSISTANCE, DecideAssistance, {H}, None, HEADS, UnitRule.RESPONSIBLE,
         "Judicial assistance rules", effects=(Effect.DECIDE_ASSISTANCE, Effect.NOTICE_PETITIONER),
         description="approval within the cap (leader above the threshold), then payment once"),
    _row(Action.PROGRESS_REPLY, ProgressReply, {R, H}, None, STAFF, UnitRule.CASE_UNIT,
         "Procuratorate rule: every letter gets a reply",
         stops=(ClockName.PROCEDURAL_REPLY,), renews=(ClockName.PROGRESS_REPLY,),
         effects=(Effect.NOTICE_PETITIONER,),
         description="procedural or progress reply to the petitioner"),
    _row(Action.REPLY, Reply, {H}, RP, STAFF, UnitRule.RESPONSIBLE, "Art. 34",
         starts=(ClockName.REVIEW_REQUEST,),
         stops=(ClockName.HANDLING, ClockName.SETTLEMENT, ClockName.PROGRESS_REPLY),
         effects=(Effect.NOTICE_PETITIONER,),
         description="the written handling opinion"),
    _row(Action.RATE, Rate, {RP, RR}, None, PETITIONER_SIDE, UnitRule.NONE, "Art. 35",
         description="satisfied / basically satisfied / unsatisfied"),
    _row(Action.REQUEST_REVIEW, RequestReview, {RP}, UR, PETITIONER_SIDE, UnitRule.NONE, "Art. 35",
         starts=(ClockName.REVIEW,), stops=(ClockName.REVIEW_REQUEST,),
         effects=(Effect.NOTICE_REVIEW_ORGAN,),
         description="review by the superior organ within 30 days of the opinion"),
    _row(Action.REVIEW_OPINION, ReviewOpinion, {UR}, RR, STAFF, UnitRule.REVIEW_ORGAN, "Art. 35",
         starts=(ClockName.RE_REVIEW_REQUEST,), stops=(ClockName.REVIEW,),
         effects=(Effect.NOTICE_PETITIONER,), description="the review opinion"),
    _row(Action.REQUEST_RE_REVIEW, RequestReReview, {RR}, URR, PETITIONER_SIDE, UnitRule.NONE,
         "Art. 36", starts=(ClockName.RE_REVIEW,), stops=(ClockName.RE_REVIEW_REQUEST,),
         effects=(Effect.NOTICE_REVIEW_ORGAN,),
         description="re-review by the next organ up within 30 days of the review opinion"),
    _row(Action.RE_REVIEW_OPINION, ReReviewOpinion, {URR}, C, STAFF, UnitRule.RE_REVIEW_ORGAN,
         "Art. 36", outcome=Outcome.CONCLUDED, stops=ALL_CLOCKS,
         effects=(Effect.TERMINATION_REGISTRY, Effect.NOTICE_PETITIONER),
         description="final: the matter is concluded (终结) and enters the termination registry"),
    _row(Action.WITHDRAW, Withdraw, OPEN_STAGES, C, PETITIONER_SIDE, UnitRule.NONE, "Art. 32",
         outcome=Outcome.WITHDRAWN, stops=ALL_CLOCKS, effects=(Effect.NOTICE_PETITIONER,),
         description="the petitioner withdraws"),
    _row(Action.ADD_NOTE, AddNote, OPEN_STAGES, None, PETITIONER_SIDE | STAFF, UnitRule.CASE_UNIT,
         "Art. 19", counts_as_note=True, description="supplementary material"),
    _row(Action.REPEAT_VISIT, RepeatVisit, OPEN_STAGES, None, PETITIONER_SIDE, UnitRule.NONE,
         "Art. 30", counts_as_note=True,
         description="a repeat visit on the same matter attaches to the open case and is counted"),
    _row(Action.REVIEW_WINDOW_LAPSED, SystemCommand, {RP}, C, {Role.SYSTEM}, UnitRule.NONE,
         "Art. 35", outcome=Outcome.RESOLVED, stops=ALL_CLOCKS, system=True,
         description="no review requested within the window: resolved"),
    _row(Action.RE_REVIEW_WINDOW_LAPSED, SystemCommand, {RR}, C, {Role.SYSTEM}, UnitRule.NONE,
         "Art. 36", outcome=Outcome.RESOLVED, stops=ALL_CLOCKS, system=True,
         description="no re-review requested within the window: resolved"),
)

TABLE: dict[Action, Transition] = {t.action: t for t in TRANSITIONS}

# How a case enters the table: not a row (there is no stage before it), but the same kind
# of record, so the clocks that registration starts are data like every other.
REGISTRATION = Transition(
    Action.REGISTER, SystemCommand, frozenset(), R, frozenset({Role.INTAKE_CLERK}),
    UnitRule.NONE, "Art. 22", starts=ENTRY_CLOCKS, effects=(Effect.NOTICE_PETITIONER,),
    description="recorded, registration number given, repeat check done")


def clocks_to_start(row: Transition, receiving_is_petition_bureau: bool) -> list[ClockName]:
    """The clocks `row` starts, with the receiving unit's clock made concrete.

    The table writes ACCEPTANCE for "the clock of the unit that now holds the case"; a
    petition bureau holding it routes it instead (Art. 22), a competent unit decides
    whether to accept it (Art. 23). Clocks the case's profile lacks are dropped later.
    """
    receipt = ClockName.ROUTING if receiving_is_petition_bureau else ClockName.ACCEPTANCE
    names: list[ClockName] = []
    for name in row.starts:
        concrete = receipt if name in RECEIPT_CLOCKS else name
        if concrete not in names:
            names.append(concrete)
    return names

# A deadline met by a progress reply in its final period hands over to a recurring
# clock instead of going overdue: the procuratorate's 3 months, then monthly progress.
SUCCESSOR_CLOCKS: dict[ClockName, ClockName] = {ClockName.SETTLEMENT: ClockName.PROGRESS_REPLY}

# The window clock whose lapse drives a system transition. A window not listed (the
# transfer objection) simply closes: the transfer then stands.
LAPSE_ACTIONS: dict[ClockName, Action] = {
    ClockName.REVIEW_REQUEST: Action.REVIEW_WINDOW_LAPSED,
    ClockName.RE_REVIEW_REQUEST: Action.RE_REVIEW_WINDOW_LAPSED,
}

# Plain words for supervisors (current details, timer summaries, notices).
CLOCK_TITLES: dict[ClockName, str] = {
    ClockName.ROUTING: "routing by the petition bureau",
    ClockName.ACCEPTANCE: "decision on acceptance",
    ClockName.TRANSFER_OBJECTION: "objection to the transfer",
    ClockName.HANDLING: "handling opinion",
    ClockName.REVIEW_REQUEST: "petitioner's request for review",
    ClockName.REVIEW: "review opinion",
    ClockName.RE_REVIEW_REQUEST: "petitioner's request for re-review",
    ClockName.RE_REVIEW: "re-review opinion",
    ClockName.PROCEDURAL_REPLY: "procedural reply",
    ClockName.SETTLEMENT: "result or progress reply",
    ClockName.PROGRESS_REPLY: "monthly progress reply",
}

STAGE_TITLES: dict[Stage, str] = {
    Stage.REGISTERED: "registered, awaiting routing or a decision on acceptance",
    Stage.IN_HANDLING: "in handling",
    Stage.REPLIED: "replied; the petitioner may ask for review",
    Stage.UNDER_REVIEW: "under review by the superior organ",
    Stage.REVIEW_REPLIED: "review replied; the petitioner may ask for re-review",
    Stage.UNDER_RE_REVIEW: "under re-review",
    Stage.CLOSED: "closed",
}


@dataclass(frozen=True)
class Refusal:
    rule: str
    message: str

    def __str__(self) -> str:
        return f"refused [{self.rule}]: {self.message}"


@dataclass
class GuardContext:
    """What a guard needs to know about the case: a plain snapshot of workflow state."""

    stage: Stage
    holding_unit: str
    responsible_unit: str | None
    review_organ: str | None = None
    re_review_organ: str | None = None
    extra_units: frozenset[str] = field(default_factory=frozenset)
    # Leaders who answer for this case although they sit in another unit: the leader who
    # took it on (领导包案) and the supervising leader of the unit holding it.
    leaders: frozenset[str] = field(default_factory=frozenset)


# A case's own leaders may act for the unit that holds or answers for it, never for the
# reviewing organs above it.
LEADER_UNIT_RULES = frozenset({UnitRule.HOLDING, UnitRule.RESPONSIBLE, UnitRule.CASE_UNIT})


def _unit_ok(rule: UnitRule, unit: str, ctx: GuardContext) -> bool:
    by_rule: dict[UnitRule, set[str | None]] = {
        UnitRule.HOLDING: {ctx.holding_unit},
        UnitRule.RESPONSIBLE: {ctx.responsible_unit},
        UnitRule.REVIEW_ORGAN: {ctx.review_organ},
        UnitRule.RE_REVIEW_ORGAN: {ctx.re_review_organ},
        UnitRule.CASE_UNIT: {
            ctx.holding_unit, ctx.responsible_unit, ctx.review_organ, ctx.re_review_organ
        },
    }
    return unit in by_rule.get(rule, set())


def check_guard(transition: Transition, command: Command, ctx: GuardContext) -> Refusal | None:
    """Stage, role and unit: the table's own guard. Action-specific rules live beside it."""
    actor = command.actor
    if ctx.stage not in transition.from_stages:
        allowed = ", ".join(sorted(s.value for s in transition.from_stages))
        return Refusal("stage", f"{transition.action} is not allowed in stage {ctx.stage}; "
                                f"allowed in: {allowed}")
    if actor.role not in transition.roles:
        roles = ", ".join(sorted(r.value for r in transition.roles))
        return Refusal("role", f"{transition.action} may be taken by {roles}, not {actor.role}")
    if actor.role in PETITIONER_SIDE or actor.role is Role.SYSTEM:
        return None  # not unit-bound: the petitioner's side acts from outside the units
    if (actor.role is Role.LEADER and actor.id in ctx.leaders
            and transition.unit_rule in LEADER_UNIT_RULES):
        return None  # leaders sit in the petition bureaus, not in the units they supervise
    if transition.unit_rule is not UnitRule.NONE and not _unit_ok(
        transition.unit_rule, actor.unit, ctx
    ):
        return Refusal(
            f"unit:{transition.unit_rule}",
            f"{transition.action} belongs to the {transition.unit_rule} unit of this case; "
            f"{actor.id} is from {actor.unit}",
        )
    return None
