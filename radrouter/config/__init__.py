"""Typed configuration: one schema, defaults that run a whole node on one machine."""

from radrouter.config.rules import Condition, PipelineRequest, Priority, Rule
from radrouter.config.settings import CONFIG_ENV, Destination, Settings, load_settings

__all__ = [
    "CONFIG_ENV",
    "Condition",
    "Destination",
    "PipelineRequest",
    "Priority",
    "Rule",
    "Settings",
    "load_settings",
]
