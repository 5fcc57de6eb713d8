"""The search attributes every saga keeps current, so the Web UI and the operator commands
can list sagas of any type by where they are. Register them on the cluster (Keyword)."""

from temporalio.common import SearchAttributeKey

SAGA_STATUS = SearchAttributeKey.for_keyword("SagaStatus")
SAGA_STEP = SearchAttributeKey.for_keyword("SagaStep")
SEARCH_ATTRIBUTES = (SAGA_STATUS, SAGA_STEP)
