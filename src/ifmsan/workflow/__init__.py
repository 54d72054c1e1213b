"""Workflow glue: the config check, the plan of what a run writes, configs made from a manifest."""
