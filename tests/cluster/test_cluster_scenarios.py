"""The integration scenarios, unchanged, on the production-shaped cluster: each test below is
the one in its own module (imported, so pytest runs it here too), whose `dev_env` is now a
client of the cluster (tests/cluster/fixtures.py) over mTLS, in its namespace, with the codec.

- lifecycle: a petition registered, accepted and replied with its rows in PostgreSQL; a
  refused action leaves no history event; a repeat visit is counted on the open case;
- exactly-once: an infrastructure error retried by Temporal registers once; a worker that
  crashes right after paying is retried and pays once;
- escalation: `petition demo`'s short run (the demo profile's clocks in seconds) gives
  overdue cases escalated to level 1 and concluded ones, found by visibility queries on
  the petition search attributes (SQL visibility on PostgreSQL).
"""

import pytest

from tests.test_activities_idempotency import (  # noqa: F401
    test_an_infrastructure_error_is_retried_by_temporal_and_registers_once,
)
from tests.test_assistance import (  # noqa: F401
    test_a_worker_crash_after_paying_is_retried_by_temporal_and_pays_once,
)
from tests.test_demo import (  # noqa: F401
    test_short_demo_on_the_dev_server_gives_overdue_and_concluded_cases,
)
from tests.test_foundation import (  # noqa: F401
    test_registration_and_transitions_are_in_postgresql,
    test_reply_before_accept_is_refused_and_leaves_no_history_event,
)
from tests.test_full_path import (  # noqa: F401
    test_a_repeat_visit_on_an_open_matter_is_counted_on_that_case,
)

pytestmark = pytest.mark.cluster
