"""The petition lifecycle as data: (stage, action) -> next stage, guard, clocks, effects.

`PetitionWorkflow` executes this table and decides no transition anywhere else.
`petition diagram` renders it. Articles cite the Regulations on the Work of
Letters and Visits (2022) unless a row says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from domain import changes, rules
from domain.case import CaseState, EffectResults
from domain.models import (
    OPEN_STAGES,
    Accept,
    Action,
    Actor,
    AddNote,
    Assign,
    ClockName,
    Command,
    ContractToLeader,
    DecideAssistance,
    DecideExtension,
    Decline,
    DeclineConcluded,
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
    LOOKUP_ORGAN = "lookup_organ"  # the reviewing organ's directory facts
    BOOK_HEARING = "book_hearing"
    RECORD_HEARING = "record_hearing"
    FILE_ASSISTANCE = "file_assistance"
    DECIDE_ASSISTANCE = "decide_assistance"
    PAY_ASSISTANCE = "pay_assistance"
    TERMINATION_REGISTRY = "termination_registry"


# Effects that may refuse the action (a double-booked hearing, an unknown unit): they run
# before the case changes, and their answers (`EffectResults`) feed the change. The rest
# run after it, in the order of the row.
BEFORE_EFFECTS = frozenset({
    Effect.TRANSFER_ORDER, Effect.DIVERSION_ORDER, Effect.LOOKUP_ORGAN, Effect.BOOK_HEARING,
    Effect.RECORD_HEARING, Effect.FILE_ASSISTANCE, Effect.DECIDE_ASSISTANCE,
})

Precondition = Callable[[CaseState], "rules.Refusal | None"]
PayloadRule = Callable[[CaseState, Command], "rules.Refusal | None"]
Change = Callable[[CaseState, Command, EffectResults, Any], dict[str, Any]]


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
    precondition: Precondition | None = None  # on the case alone (see `allowed_actions`)
    rule: PayloadRule | None = None  # on the case and the payload
    change: Change | None = None  # what the action changes besides stage and clocks

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
         effects=(Effect.NOTICE_PETITIONER,), change=changes.accept,
         description="the holding unit accepts; written acceptance notice"),
    _row(Action.DECLINE, Decline, {R}, C, STAFF, UnitRule.HOLDING, "Art. 23",
         outcome=Outcome.NOT_ACCEPTED, stops=ALL_CLOCKS, effects=(Effect.NOTICE_PETITIONER,),
         rule=rules.decline_cites_case,
         description="not accepted, with a statutory reason; written notice citing it"),
    _row(Action.DECLINE_CONCLUDED, DeclineConcluded, {R}, C, {Role.SYSTEM}, UnitRule.NONE,
         "Art. 30", outcome=Outcome.NOT_ACCEPTED, stops=ALL_CLOCKS,
         effects=(Effect.NOTICE_PETITIONER,), system=True, precondition=rules.concluded_matter,
         description="at registration: the same matter was concluded after re-review"),
    _row(Action.DIVERT, Divert, {R}, C, STAFF, UnitRule.HOLDING, "Art. 31 (诉访分离)",
         outcome=Outcome.DIVERTED, stops=ALL_CLOCKS,
         effects=(Effect.DIVERSION_ORDER, Effect.NOTICE_PETITIONER), change=changes.divert,
         description="matter for litigation, arbitration, review or discipline: leaves the track"),
    _row(Action.TRANSFER, Transfer, {R}, R, STAFF, UnitRule.HOLDING, "Art. 22-23",
         starts=(ClockName.ACCEPTANCE, ClockName.TRANSFER_OBJECTION),
         stops=(ClockName.ROUTING, ClockName.ACCEPTANCE, ClockName.TRANSFER_OBJECTION,
                ClockName.PROCEDURAL_REPLY),
         effects=(Effect.TRANSFER_ORDER, Effect.NOTICE_RECEIVING_UNIT, Effect.NOTICE_PETITIONER),
         rule=rules.transfer_elsewhere, change=changes.transfer,
         description="transfer work order; the receiving unit's acceptance clock starts anew"),
    _row(Action.REJECT_TRANSFER, RejectTransfer, {R}, R, STAFF, UnitRule.HOLDING, "Art. 23",
         starts=(ClockName.ACCEPTANCE,),
         stops=(ClockName.ACCEPTANCE, ClockName.TRANSFER_OBJECTION),
         effects=(Effect.NOTICE_RECEIVING_UNIT,),
         precondition=rules.transfer_objection_open, change=changes.reject_transfer,
         description="the receiving unit objects within 5 working days; the case goes back "
                     "and the returning unit's clock starts anew"),
    _row(Action.ASSIGN, Assign, {R, H}, None, STAFF, UnitRule.CASE_UNIT, "Art. 33",
         change=changes.assign, description="a handler takes the case"),
    _row(Action.CONTRACT_TO_LEADER, ContractToLeader, {R, H}, None, HEADS, UnitRule.CASE_UNIT,
         "Art. 7 (领导包案)", effects=(Effect.NOTICE_LEADER,), change=changes.contract_to_leader,
         description="a named leader takes on the case"),
    _row(Action.REQUEST_EXTENSION, RequestExtension, {H}, None, STAFF, UnitRule.RESPONSIBLE,
         "Art. 34", precondition=rules.extension_available, rule=rules.extension_within_limit,
         change=changes.request_extension,
         description="the handler asks the unit head for more time"),
    _row(Action.DECIDE_EXTENSION, DecideExtension, {H}, None, frozenset({Role.UNIT_HEAD}),
         UnitRule.RESPONSIBLE, "Art. 34", extends=(ClockName.HANDLING,),
         effects=(Effect.NOTICE_PETITIONER,), precondition=rules.extension_pending,
         rule=rules.extension_as_requested, change=changes.decide_extension,
         description="at most once, at most the profile's limit; the reason goes to the "
                     "petitioner"),
    _row(Action.SCHEDULE_HEARING, ScheduleHearing, {H, URR}, None, STAFF, UnitRule.CASE_UNIT,
         "Art. 34 / Art. 36", pauses=(ClockName.RE_REVIEW,), effects=(Effect.BOOK_HEARING,),
         change=changes.schedule_hearing,
         description="public hearing with third-party officers; re-review time stops"),
    _row(Action.RECORD_HEARING, RecordHearing, {H, URR}, None, STAFF, UnitRule.CASE_UNIT,
         "Art. 34 / Art. 36", resumes=(ClockName.RE_REVIEW,), effects=(Effect.RECORD_HEARING,),
         precondition=rules.hearing_to_record, rule=rules.hearing_unrecorded,
         change=changes.record_hearing,
         description="the hearing's outcome; re-review time runs again"),
    _row(Action.REQUEST_ASSISTANCE, RequestAssistance, {H}, None, STAFF, UnitRule.RESPONSIBLE,
         "Judicial assistance rules", effects=(Effect.FILE_ASSISTANCE,),
         change=changes.request_assistance,
         description="judicial or hardship assistance application"),
    _row(Action.DECIDE_ASSISTANCE, DecideAssistance, {H}, None, HEADS, UnitRule.RESPONSIBLE,
         "Judicial assistance rules",
         effects=(Effect.DECIDE_ASSISTANCE, Effect.PAY_ASSISTANCE, Effect.NOTICE_PETITIONER),
         precondition=rules.assistance_to_decide, rule=rules.assistance_decision,
         change=changes.decide_assistance,
         description="approval within the cap (leader above the threshold), then payment once"),
    _row(Action.PROGRESS_REPLY, ProgressReply, {R, H}, None, STAFF, UnitRule.CASE_UNIT,
         "Procuratorate rule: every letter gets a reply",
         stops=(ClockName.PROCEDURAL_REPLY,), renews=(ClockName.PROGRESS_REPLY,),
         effects=(Effect.NOTICE_PETITIONER,), change=changes.progress_reply,
         description="procedural or progress reply to the petitioner"),
    _row(Action.REPLY, Reply, {H}, RP, STAFF, UnitRule.RESPONSIBLE, "Art. 34",
         starts=(ClockName.REVIEW_REQUEST,),
         stops=(ClockName.HANDLING, ClockName.SETTLEMENT, ClockName.PROGRESS_REPLY),
         effects=(Effect.NOTICE_PETITIONER,),
         description="the written handling opinion"),
    _row(Action.RATE, Rate, {RP, RR}, None, PETITIONER_SIDE, UnitRule.NONE, "Art. 35",
         change=changes.rate, description="satisfied / basically satisfied / unsatisfied"),
    _row(Action.REQUEST_REVIEW, RequestReview, {RP}, UR, PETITIONER_SIDE, UnitRule.NONE, "Art. 35",
         starts=(ClockName.REVIEW,), stops=(ClockName.REVIEW_REQUEST,),
         effects=(Effect.LOOKUP_ORGAN, Effect.NOTICE_REVIEW_ORGAN),
         rule=rules.review_by_superior, change=changes.request_review,
         description="review by the superior organ within 30 days of the opinion"),
    _row(Action.REVIEW_OPINION, ReviewOpinion, {UR}, RR, STAFF, UnitRule.REVIEW_ORGAN, "Art. 35",
         starts=(ClockName.RE_REVIEW_REQUEST,), stops=(ClockName.REVIEW,),
         effects=(Effect.NOTICE_PETITIONER,), description="the review opinion"),
    _row(Action.REQUEST_RE_REVIEW, RequestReReview, {RR}, URR, PETITIONER_SIDE, UnitRule.NONE,
         "Art. 36", starts=(ClockName.RE_REVIEW,), stops=(ClockName.RE_REVIEW_REQUEST,),
         effects=(Effect.LOOKUP_ORGAN, Effect.NOTICE_REVIEW_ORGAN),
         rule=rules.re_review_above_reviewer, change=changes.request_re_review,
         description="re-review by the next organ up within 30 days of the review opinion"),
    _row(Action.RE_REVIEW_OPINION, ReReviewOpinion, {URR}, C, STAFF, UnitRule.RE_REVIEW_ORGAN,
         "Art. 36", outcome=Outcome.CONCLUDED, stops=ALL_CLOCKS,
         effects=(Effect.TERMINATION_REGISTRY, Effect.NOTICE_PETITIONER),
         description="final: the matter is concluded (终结) and enters the termination registry"),
    _row(Action.WITHDRAW, Withdraw, OPEN_STAGES, C, PETITIONER_SIDE, UnitRule.NONE, "Art. 32",
         outcome=Outcome.WITHDRAWN, stops=ALL_CLOCKS, effects=(Effect.NOTICE_PETITIONER,),
         description="the petitioner withdraws"),
    _row(Action.ADD_NOTE, AddNote, OPEN_STAGES, None, PETITIONER_SIDE | STAFF, UnitRule.CASE_UNIT,
         "Art. 19", counts_as_note=True, change=changes.add_note,
         description="supplementary material"),
    _row(Action.REPEAT_VISIT, RepeatVisit, OPEN_STAGES, None, PETITIONER_SIDE, UnitRule.NONE,
         "Art. 30", counts_as_note=True, change=changes.repeat_visit,
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


Refusal = rules.Refusal

# A case's own leaders may act for the unit that holds or answers for it, never for the
# reviewing organs above it.
LEADER_UNIT_RULES = frozenset({UnitRule.HOLDING, UnitRule.RESPONSIBLE, UnitRule.CASE_UNIT})


def case_leaders(case: CaseState) -> frozenset[str]:
    """Leaders who answer for this case although they sit in another unit: the leader who
    took it on (领导包案) and the supervising leaders of the units holding it."""
    leaders = {case.leader_id} if case.leader_id else set()
    for code in (case.holding_unit, case.responsible_unit):
        facts = case.units.get(code or "")
        if facts is not None and facts.supervising_leader:
            leaders.add(facts.supervising_leader)
    return frozenset(leaders)


def _unit_ok(rule: UnitRule, unit: str, case: CaseState) -> bool:
    by_rule: dict[UnitRule, set[str | None]] = {
        UnitRule.HOLDING: {case.holding_unit},
        UnitRule.RESPONSIBLE: {case.responsible_unit},
        UnitRule.REVIEW_ORGAN: {case.review_organ},
        UnitRule.RE_REVIEW_ORGAN: {case.re_review_organ},
        UnitRule.CASE_UNIT: {
            case.holding_unit, case.responsible_unit, case.review_organ, case.re_review_organ
        },
    }
    return unit in by_rule.get(rule, set())


def actor_refusal(row: Transition, actor: Actor, case: CaseState) -> Refusal | None:
    """Stage, role and unit: who may take this row now."""
    if case.stage not in row.from_stages:
        allowed = ", ".join(sorted(s.value for s in row.from_stages))
        return Refusal("stage", f"{row.action} is not allowed in stage {case.stage}; "
                                f"allowed in: {allowed}")
    if actor.role not in row.roles:
        roles = ", ".join(sorted(r.value for r in row.roles))
        return Refusal("role", f"{row.action} may be taken by {roles}, not {actor.role}")
    if actor.role in PETITIONER_SIDE or actor.role is Role.SYSTEM:
        return None  # not unit-bound: the petitioner's side acts from outside the units
    if (actor.role is Role.LEADER and actor.id in case_leaders(case)
            and row.unit_rule in LEADER_UNIT_RULES):
        return None  # leaders sit in the petition bureaus, not in the units they supervise
    if row.unit_rule is not UnitRule.NONE and not _unit_ok(row.unit_rule, actor.unit, case):
        return Refusal(
            f"unit:{row.unit_rule}",
            f"{row.action} belongs to the {row.unit_rule} unit of this case; "
            f"{actor.id} is from {actor.unit}",
        )
    return None


def check_guard(row: Transition, command: Command, case: CaseState) -> Refusal | None:
    """The whole guard of a row: stage, role, unit, the row's precondition and rule."""
    refusal = actor_refusal(row, command.actor, case)
    if refusal is None and row.precondition is not None:
        refusal = row.precondition(case)
    if refusal is None and row.rule is not None:
        refusal = row.rule(case, command)
    return refusal


@dataclass(frozen=True)
class AllowedAction:
    action: Action
    description: str
    article: str
    payload_schema: dict[str, Any]  # JSON Schema of the command, without actor and request id


def payload_schema(command: type[Command]) -> dict[str, Any]:
    schema = command.model_json_schema()
    for name in ("actor", "request_id"):
        schema.get("properties", {}).pop(name, None)
        if name in schema.get("required", []):
            schema["required"].remove(name)
    schema.get("$defs", {}).pop("Actor", None)
    return schema


def allowed_actions(case: CaseState, actor: Actor) -> list[AllowedAction]:
    """The actions `actor` may take on `case` now, each with its payload schema. A payload
    may still be refused by the row's `rule` (too many days, the wrong organ)."""
    return [AllowedAction(row.action, row.description, row.article, payload_schema(row.command))
            for row in TRANSITIONS
            if not row.system and actor_refusal(row, actor, case) is None
            and (row.precondition is None or row.precondition(case) is None)]
