"""The Dagster layer: thin assets, checks, jobs and schedules over the plain-Python domain."""
