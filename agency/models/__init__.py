"""Models of the agency core, one module per idea."""

from agency.models.agents import AgentProfile, Attempt, Experience, RoutingChange, TrainingExample
from agency.models.api import ApiKey, IdempotencyRecord
from agency.models.cycles import CycleRun
from agency.models.gateway import (
    BreakerEvent,
    BreakerState,
    ModelCall,
    ModelDeployment,
    Provider,
    Route,
    RouteStep,
)
from agency.models.outbox import ClientEmail
from agency.models.payments import StripeEvent
from agency.models.tasks import Client, Deliverable, DeliveryLink, Domain, Task, TaskEvent

__all__ = [
    "AgentProfile",
    "ApiKey",
    "Attempt",
    "BreakerEvent",
    "BreakerState",
    "Client",
    "ClientEmail",
    "CycleRun",
    "Deliverable",
    "DeliveryLink",
    "Domain",
    "Experience",
    "IdempotencyRecord",
    "ModelCall",
    "ModelDeployment",
    "Provider",
    "Route",
    "RouteStep",
    "RoutingChange",
    "StripeEvent",
    "Task",
    "TaskEvent",
    "TrainingExample",
]
