"""Everything the harness can run: the scenarios and the systems.

To add a system (Tickwire's, for one), write a bench.system.System subclass naming the
scenarios it takes part in, and add an instance to `systems()`: it then runs in every
one of those scenarios, interleaved with the anchors, and is compared with each
scenario's baseline. To add a scenario, add a bench.scenarios.Scenario to `scenarios()`
and its name to the systems that run it.
"""

from __future__ import annotations

from bench.anchors.systems import anchor_systems
from bench.scenarios import ALL, Scenario
from bench.system import System
from bench.tickwire_sc import TickwireScJson
from bench.tickwire_systems import tickwire_systems


def scenarios() -> list[Scenario]:
    return list(ALL)


def systems() -> list[System]:
    """Every system, in the order they run within a round."""
    return [*tickwire_systems(), TickwireScJson(), *anchor_systems()]
