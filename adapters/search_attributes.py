"""The custom search attributes supervisors filter on. No personal data in any of them.

Never a key named `Status`: it collides with the Web UI's own column.
"""

from typing import Any

from temporalio.common import SearchAttributeKey

PETITION_STAGE = SearchAttributeKey.for_keyword("PetitionStage")
REGISTRATION_NO = SearchAttributeKey.for_keyword("RegistrationNo")
RESPONSIBLE_UNIT = SearchAttributeKey.for_keyword("ResponsibleUnit")
CHANNEL = SearchAttributeKey.for_keyword("Channel")
CATEGORY = SearchAttributeKey.for_keyword("Category")
NEXT_DEADLINE = SearchAttributeKey.for_datetime("NextDeadline")
OVERDUE = SearchAttributeKey.for_bool("Overdue")
ESCALATION_LEVEL = SearchAttributeKey.for_int("EscalationLevel")
LAW_RELATED = SearchAttributeKey.for_bool("LawRelated")
OUTCOME = SearchAttributeKey.for_keyword("Outcome")
# The handler holding the case (a staff person id from the directory, never a name): the
# bulk reassignment's visibility query (domain/reassignment.py). Set by petitions started
# or continued after the `handler-search-attribute` patch.
HANDLER = SearchAttributeKey.for_keyword("Handler")

ALL_KEYS = (
    PETITION_STAGE,
    REGISTRATION_NO,
    RESPONSIBLE_UNIT,
    CHANNEL,
    CATEGORY,
    NEXT_DEADLINE,
    OVERDUE,
    ESCALATION_LEVEL,
    LAW_RELATED,
    OUTCOME,
    HANDLER,
)

# The keys by name, for the values `domain.projections.search_attribute_values` gives.
BY_NAME: dict[str, SearchAttributeKey[Any]] = {key.name: key for key in ALL_KEYS}
