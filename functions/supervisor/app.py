"""Supervisor function (control plane, Python 3.12): keeps the continuous trainer running.

Invoked by EventBridge every minute and whenever a trainer task stops (ECS Task State Change), so
a trainer that ended without a stop request resumes even when no request reaches the API.
"""
from aws_lambda_powertools import Logger

from easyrec_online import wiring
from easyrec_online.control.supervisor import TrainingSupervisor
from easyrec_online.control.training import TrainingService
from easyrec_online.core.config import Settings

logger = Logger(service="supervisor")

settings = Settings.from_env()
state = wiring.state_store(settings)
supervisor = TrainingSupervisor(settings, state, TrainingService(state, wiring.training_launcher(settings)))


@logger.inject_lambda_context
def handler(event, context):
    did = supervisor.ensure()
    decision = supervisor.decide()
    logger.info("supervisor", extra={"did": did, "next": decision.as_dict(), "trigger": event.get("detail-type")})
    return {"did": did, "next": decision.as_dict()}
