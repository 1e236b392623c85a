"""Token-budget planning and the task instruction table."""

from __future__ import annotations

import numpy as np
import pytest

from e5_integrations import DEFAULT_TASK, UnknownTaskError, available_tasks, resolve_task
from e5_integrations._batching import plan_batches


@pytest.mark.parametrize("seed", range(5))
def test_plan_batches_covers_every_index_once_within_budget(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 700, size=500).tolist()
    budget = 2048
    batches = plan_batches(lengths, budget)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert width * len(batch) <= budget or len(batch) == 1
    widths = [max(lengths[i] for i in b) for b in batches]
    assert widths == sorted(widths, reverse=True)  # longest first


def test_plan_batches_gives_oversized_text_its_own_batch():
    assert plan_batches([5000, 10, 10], 4096) == [[0], [1, 2]]


def test_registered_task_lookup():
    tasks = available_tasks()
    assert len(tasks) >= 68
    assert (
        resolve_task("NQ").instruction
        == "Given a question, retrieve Wikipedia passages that answer the question"
    )
    assert resolve_task("nq") == resolve_task("NQ")
    assert resolve_task("trec-covid").name == "TRECCOVID"
    assert resolve_task("cqadupstack-unix").name == "CQADupstack"
    assert resolve_task("Retrieval").instruction == DEFAULT_TASK


@pytest.mark.parametrize(
    "name", ["STS", "TwitterSemEval2015", "ArxivClusteringP2P", "Banking77Classification"]
)
def test_symmetric_tasks(name):
    assert resolve_task(name).symmetric


@pytest.mark.parametrize("name", ["MSMARCO", "SciDocsRR", "NQ"])
def test_asymmetric_tasks(name):
    assert not resolve_task(name).symmetric


def test_free_sentence_passes_through():
    task = resolve_task("Given a legal question, retrieve relevant statutes")
    assert task.name is None and task.instruction.startswith("Given a legal") and not task.symmetric


def test_unknown_name_lists_closest():
    with pytest.raises(UnknownTaskError, match="SciFact") as info:
        resolve_task("SciFcat")
    assert isinstance(info.value, ValueError)


def test_symmetric_task_puts_instruction_on_documents(encoder):
    docs = ["a cat sat on the mat", "stocks fell sharply"]
    np.testing.assert_allclose(
        encoder.encode_documents(docs, task="STS"), encoder.encode_queries(docs, task="STS"), atol=1e-6
    )
    assert not np.allclose(encoder.encode_documents(docs, task="NQ"), encoder.encode_queries(docs, task="NQ"))
