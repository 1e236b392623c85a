"""A local multi-node Ray cluster in a process of its own, driven over stdin/stdout.

``python -m tests.ray._cluster TEMP_DIR`` starts a head node and one worker node on this
machine (``ray.cluster_utils.Cluster``: each node its own raylet, object store and worker
processes, as on separate machines), prints ``{"address", "worker_raylet", "worker_node"}``
(the worker node's raylet pid and node id) as one JSON line, then answers commands, one per
line, with one JSON line each:

- ``remove-worker``: kill the worker node (its raylet and every worker process on it), as
  when a machine of the cluster dies;
- ``add-worker``: add a fresh worker node (answers its raylet's pid and node id);
- ``quit``: shut the cluster down.

The tests run their e5 drivers as separate processes against ``address`` (``--ray-address``),
so the test process's own Ray session (``ray_session``) is not touched.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

#: Each node's logical CPUs (more than the machine's 2 cores: Ray only counts). The head has
#: room for the read and write tasks, its own embedding actor and one restarted from a lost
#: node; the worker node for one actor and tasks.
HEAD_CPUS = 3
NODE_CPUS = 2
OBJECT_STORE_BYTES = 256 * 1024 * 1024


def _raylet_pid(node: Any) -> int:
    from ray._private import ray_constants

    return int(node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)


def _describe(node: Any) -> dict[str, Any]:
    return {"worker_raylet": _raylet_pid(node), "worker_node": str(node.node_id)}


def main(temp_dir: str) -> None:
    from ray.cluster_utils import Cluster

    # the repository on the path: actors import the tests' backend (tests/ray/_gated_backend.py)
    repo = str(Path(__file__).resolve().parents[2])
    env = {"TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "PYTHONPATH": repo}
    # Cluster writes the head's address to Ray's default temp folder (/tmp/ray), which a
    # fresh machine does not have yet: every other Ray file goes under temp_dir
    from ray._common.utils import get_default_ray_temp_dir

    os.makedirs(get_default_ray_temp_dir(), exist_ok=True)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": HEAD_CPUS,
            "num_gpus": 0,
            "object_store_memory": OBJECT_STORE_BYTES,
            "include_dashboard": False,
            "temp_dir": temp_dir,
            "env_vars": env,
        },
    )
    worker = cluster.add_node(
        num_cpus=NODE_CPUS, num_gpus=0, object_store_memory=OBJECT_STORE_BYTES, env_vars=env
    )
    cluster.wait_for_nodes()
    print(json.dumps({"address": cluster.address, **_describe(worker)}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "remove-worker":
            cluster.remove_node(worker, allow_graceful=False)
            print(json.dumps({"removed": True}), flush=True)
        elif command == "add-worker":
            worker = cluster.add_node(
                num_cpus=NODE_CPUS, num_gpus=0, object_store_memory=OBJECT_STORE_BYTES, env_vars=env
            )
            cluster.wait_for_nodes()
            print(json.dumps(_describe(worker)), flush=True)
        elif command == "quit":
            break
    cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
