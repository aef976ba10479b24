"""The desktop owner's policy: when the machine is offered, suspended, given back.

``PolicyMachine`` (pure) judges samples of owner activity from a swappable
``ActivitySource``; ``PolicyDriver`` polls the source and tells the daemon what to do.
See docs/owner-policy.md.
"""

from bonjourgrid.policy.activity import ActivitySource, FileActivitySource, PsutilActivitySource
from bonjourgrid.policy.config import Caps, PolicyConfig, PolicyConfigError, task_caps
from bonjourgrid.policy.driver import PolicyDriver
from bonjourgrid.policy.state import Action, Activity, PolicyMachine, PolicyState, Presence

__all__ = [
    "Action",
    "Activity",
    "ActivitySource",
    "Caps",
    "FileActivitySource",
    "PolicyConfig",
    "PolicyConfigError",
    "PolicyDriver",
    "PolicyMachine",
    "PolicyState",
    "Presence",
    "PsutilActivitySource",
    "task_caps",
]
