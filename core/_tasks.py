"""The e5 evaluation instruction table, and how ``task=`` is resolved.

``task=`` accepts either a free one-sentence instruction (anything containing whitespace) or
a registered task name from the table used to evaluate e5-mistral-7b-instruct on MTEB/BEIR
(``"NQ"``, ``"SciFact"``, ``"STS"`` ...). A single word that is not registered is almost
certainly a typo, so it raises :class:`UnknownTaskError` listing the closest names instead
of silently becoming a one-word instruction.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from e5_integrations._errors import UnknownTaskError

__all__ = ["DEFAULT_TASK", "Task", "available_tasks", "resolve_task"]

#: The instruction the model card uses for web-search retrieval (MS MARCO).
DEFAULT_TASK = "Given a web search query, retrieve relevant passages that answer the query"


@dataclass(frozen=True)
class Task:
    """A resolved task.

    Attributes:
        name: registered name, or ``None`` for a free-form instruction.
        type: MTEB task type (``Retrieval``, ``STS`` ...), or ``None`` for a free instruction.
        instruction: the one-sentence instruction put in ``Instruct: {instruction}\\nQuery: ``.
        symmetric: both sides are queries (STS, clustering, classification, pair
            classification, summarization, bitext mining), so documents get the
            instruction too. Retrieval and reranking are asymmetric.
    """

    name: str | None
    type: str | None
    instruction: str
    symmetric: bool = False


@lru_cache(maxsize=1)
def _table() -> tuple[dict[str, Task], dict[str, str]]:
    raw = json.loads(resources.files("e5_integrations").joinpath("data/e5_tasks.json").read_text("utf-8"))
    symmetric_types: Mapping[str, bool] = raw["symmetric_types"]
    tasks: dict[str, Task] = {}
    for row in raw["tasks"]:
        tasks[row["name"]] = Task(row["name"], row["type"], row["instruction"], symmetric_types[row["type"]])
    for name, spec in raw["type_level"].items():
        tasks[name] = Task(name, name, spec["instruction"], spec["symmetric"])
    lookup = {name.lower(): name for name in tasks}
    for alias, target in raw["aliases"].items():
        lookup[alias.lower()] = target
    return tasks, lookup


def available_tasks() -> dict[str, Task]:
    """All registered tasks by name (about 70 MTEB/BEIR/C-MTEB tasks plus type-level ones)."""
    return dict(_table()[0])


def resolve_task(task: str | Task) -> Task:
    """Turn ``task=`` into a :class:`Task`.

    - a :class:`Task` is returned as is;
    - a registered name (case-insensitive, BEIR aliases like ``trec-covid``, any
      ``cqadupstack*`` subset) gives its table entry;
    - text containing whitespace is a free instruction (asymmetric);
    - anything else raises :class:`UnknownTaskError` with the closest registered names.
    """
    if isinstance(task, Task):
        return task
    if not isinstance(task, str):
        raise TypeError(f"task must be a str or Task, got {type(task).__name__}")
    tasks, lookup = _table()
    key = task.strip().lower()
    if key.startswith("cqadupstack"):
        return tasks["CQADupstack"]
    if key in lookup:
        return tasks[lookup[key]]
    if any(ch.isspace() for ch in task.strip()):
        return Task(None, None, task, False)
    close = difflib.get_close_matches(task, list(tasks), n=5, cutoff=0.5) or difflib.get_close_matches(
        key, list(lookup), n=5, cutoff=0.5
    )
    hint = f" Closest registered names: {', '.join(close)}." if close else ""
    raise UnknownTaskError(
        f"unknown task name {task!r}: it has no spaces, so it was read as a registered task name, "
        f"but it is not one of the {len(tasks)} registered tasks.{hint} "
        "Pass a one-sentence instruction (e.g. 'Given a question, retrieve passages that answer it') "
        "or see e5_integrations.available_tasks()."
    )
