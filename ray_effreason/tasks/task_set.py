"""Several tasks behind one grader, so one verifier pool grades every task of an evaluation."""

from __future__ import annotations

from dataclasses import replace

from ray_effreason.tasks.base import Example, Task


def _graded_as(example: Example) -> Example:
    """The example less its prompt: a prompt rewritten after loading (a stated budget, budget_prompts.py) changes
    what the model reads, not how its answer is graded, so the set grades it as the example it was loaded as."""
    return replace(example, prompt="")


class TaskSet(Task):
    """Each example is graded by the task it came from (found by the example itself, a frozen dataclass, whatever
    its prompt says)."""

    name = "task-set"

    def __init__(self, tasks: dict[str, Task]):
        super().__init__()
        self.tasks = tasks
        self.task_of: dict[Example, str] = {}
        for name, task in tasks.items():
            for example in map(_graded_as, task.examples):
                if self.task_of.setdefault(example, name) != name:
                    raise ValueError(f"example {example.id!r} is in tasks {self.task_of[example]} and {name}")

    def _load(self) -> list[Example]:
        return [example for task in self.tasks.values() for example in task.examples]

    def grade(self, completion: str, example: Example, *, timeout_s: float = 5.0,
              extraction: str = "boxed") -> bool | None:
        task = self.tasks[self.task_of[_graded_as(example)]]
        return task.grade(completion, example, timeout_s=timeout_s, extraction=extraction)
