"""The fan-out's consumer helpers moved to workflows/fanout.py. The harness (bench, tools)
still imports these two names from here; import them from workflows.fanout."""

from workflows.fanout import RecentIds as RecentIds
from workflows.fanout import job_id as job_id
