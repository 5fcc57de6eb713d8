"""The time-skipping test server from the venv's binary (never downloaded), with search
attributes registered: it takes no --search-attribute, so they go through the operator API."""

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.common import SearchAttributeKey
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from stack.launcher import venv_binary


@contextlib.asynccontextmanager
async def time_skipping_server(
    data_converter: DataConverter, search_attributes: Iterable[SearchAttributeKey[Any]]
) -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(venv_binary("temporal-test-server")),
        data_converter=data_converter,
    ) as env:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={
                    key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                    for key in search_attributes
                },
            )
        )
        yield env
