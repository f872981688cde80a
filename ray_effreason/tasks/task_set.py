"""Several tasks behind one grader, so one verifier pool grades every task of an evaluation."""

from __future__ import annotations

from ray_effreason.tasks.base import Example, Task


class TaskSet(Task):
    """Each example is graded by the task it came from (found by the example itself, a frozen dataclass)."""

    name = "task-set"

    def __init__(self, tasks: dict[str, Task]):
        super().__init__()
        self.tasks = tasks
        self.task_of: dict[Example, str] = {}
        for name, task in tasks.items():
            for example in task.examples:
                if self.task_of.setdefault(example, name) != name:
                    raise ValueError(f"example {example.id!r} is in tasks {self.task_of[example]} and {name}")

    def _load(self) -> list[Example]:
        return list(self.task_of)

    def grade(self, completion: str, example: Example, *, timeout_s: float = 5.0,
              extraction: str = "boxed") -> bool | None:
        return self.tasks[self.task_of[example]].grade(completion, example, timeout_s=timeout_s,
                                                       extraction=extraction)
