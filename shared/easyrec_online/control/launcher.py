"""Starting training tasks: ECS RunTask on AWS (and on the local runner, which plays the ECS agent).

The in-memory launcher records launches for unit tests of the control plane.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from easyrec_online.core.config import Settings


@dataclass
class TaskState:
    running: bool
    detail: str = ""


class TrainingLauncher:
    def launch(self, job_id: str, mode: str) -> str:
        """Start a training task for job_id; returns a reference to the task."""
        raise NotImplementedError

    def describe(self, task_ref: str) -> Optional[TaskState]:
        """The task's state, or None when the task is unknown (e.g. the local cloud restarted)."""
        raise NotImplementedError

    def stop(self, task_ref: str, reason: str) -> None:
        """Stop the task (SIGTERM to its container, then SIGKILL after the grace period)."""
        raise NotImplementedError


class InMemoryTrainingLauncher(TrainingLauncher):
    def __init__(self) -> None:
        self.launched: List[Dict[str, str]] = []
        self.states: Dict[str, TaskState] = {}

    def launch(self, job_id: str, mode: str) -> str:
        ref = "task-{}".format(len(self.launched) + 1)
        self.launched.append({"job_id": job_id, "mode": mode, "task_ref": ref})
        self.states[ref] = TaskState(True)
        return ref

    def describe(self, task_ref: str) -> Optional[TaskState]:
        return self.states.get(task_ref)

    def stop(self, task_ref: str, reason: str) -> None:
        self.states[task_ref] = TaskState(False, reason)


class LaunchError(Exception):
    pass


class EcsTrainingLauncher(TrainingLauncher):
    def __init__(self, ecs_client: Any, settings: Settings) -> None:
        self._ecs = ecs_client
        self._settings = settings

    @staticmethod
    def network(s: Settings) -> Dict[str, Any]:
        # A public IP only when the template's network parameters ask for one (TrainingAssignPublicIp).
        public_ip = "ENABLED" if s.training_assign_public_ip.upper() == "ENABLED" else "DISABLED"
        network: Dict[str, Any] = {"awsvpcConfiguration": {"subnets": s.subnet_ids, "assignPublicIp": public_ip}}
        if s.security_group_ids:
            network["awsvpcConfiguration"]["securityGroups"] = s.security_group_ids
        return network

    def launch(self, job_id: str, mode: str) -> str:
        s = self._settings
        network = self.network(s)
        response = self._ecs.run_task(
            cluster=s.training_cluster,
            taskDefinition=s.training_task_definition,
            launchType="FARGATE",
            count=1,
            startedBy="easyrec-online-api",
            networkConfiguration=network,
            overrides={"containerOverrides": [{
                "name": s.training_container,
                "environment": [{"name": "JOB_ID", "value": job_id}, {"name": "TRAINING_MODE", "value": mode}],
            }]},
        )
        if response.get("failures") or not response.get("tasks"):
            raise LaunchError("ECS refused the training task: {}".format(response.get("failures")))
        return response["tasks"][0]["taskArn"]

    def describe(self, task_ref: str) -> Optional[TaskState]:
        tasks = self._ecs.describe_tasks(cluster=self._settings.training_cluster, tasks=[task_ref]).get("tasks", [])
        if not tasks:
            return None
        task = tasks[0]
        # desiredStatus turns STOPPED as soon as the task is told to stop or its container exits.
        running = task.get("desiredStatus") != "STOPPED" and task.get("lastStatus") != "STOPPED"
        return TaskState(running, task.get("stoppedReason", ""))

    def stop(self, task_ref: str, reason: str) -> None:
        self._ecs.stop_task(cluster=self._settings.training_cluster, task=task_ref, reason=reason[:255])
