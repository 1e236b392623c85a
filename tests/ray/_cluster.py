"""A local multi-node Ray cluster in a process of its own, driven over stdin/stdout.

``python -m tests.ray._cluster TEMP_DIR`` starts a head node and one worker node on this
machine (``ray.cluster_utils.Cluster``: each node its own raylet, object store and worker
processes, as on separate machines), prints ``{"address": ..., "worker_raylet": pid}`` as one
JSON line, then answers commands, one per line, with one JSON line each:

- ``remove-worker``: kill the worker node (its raylet and every worker process on it), as
  when a machine of the cluster dies;
- ``add-worker``: add a fresh worker node;
- ``quit``: shut the cluster down.

The tests run their e5 drivers as separate processes against ``address`` (``--ray-address``),
so the test process's own Ray session (``ray_session``) is not touched.
"""

from __future__ import annotations

import json
import sys
from typing import Any

#: Each node's logical CPUs: the head runs the read, chunk and write tasks and one embedding
#: actor, the worker node the other actors (more than the machine's 2 cores: Ray only counts).
NODE_CPUS = 2
OBJECT_STORE_BYTES = 256 * 1024 * 1024


def _raylet_pid(node: Any) -> int:
    from ray._private import ray_constants

    return int(node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)


def main(temp_dir: str) -> None:
    from ray.cluster_utils import Cluster

    env = {"TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": NODE_CPUS,
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
    print(json.dumps({"address": cluster.address, "worker_raylet": _raylet_pid(worker)}), flush=True)
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
            print(json.dumps({"worker_raylet": _raylet_pid(worker)}), flush=True)
        elif command == "quit":
            break
    cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
