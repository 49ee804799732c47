"""Local look-alikes of the upstream clouds' APIs (DESIGN.md §7)."""

from apps.sourcing.simulators.base import Simulator
from apps.sourcing.simulators.lambda_labs.server import LambdaSimulator
from apps.sourcing.simulators.runpod.server import RunPodSimulator
from apps.sourcing.simulators.serving import RunningSimulator, SimControl
from apps.sourcing.simulators.vast_ai.server import VastSimulator

SIMULATORS: dict[str, type[Simulator]] = {
    VastSimulator.name: VastSimulator,
    RunPodSimulator.name: RunPodSimulator,
    LambdaSimulator.name: LambdaSimulator,
}

__all__ = ["SIMULATORS", "RunningSimulator", "SimControl", "Simulator"]
