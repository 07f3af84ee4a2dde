"""The loopback address plan of the local backend and of simulated clients.

On Linux the whole of 127.0.0.0/8 is local, so every piece of a topology gets an address of its own, as it would
on a real network: the balancer, each node, each pod, and each simulated client. Who connects from where is then
visible to every piece exactly as in a cluster (kube-proxy keys affinity on it, nginx hashes it).

Client addresses can be spread over the second and third octets (every client in a /24 of its own, so that
nginx ``ip_hash``, which uses three octets, is meaningful), packed into one /24 (clients behind one corporate
NAT range), or all one address.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "LB_IP",
    "ClientAddressMode",
    "app_pod_ip",
    "client_address",
    "node_ip",
    "tier_pod_ip",
    "worker_client_index",
]

LB_IP = "127.1.0.1"

# Locust workers that connect after the first ``expect_workers`` take client numbers from here on, a block each.
LATE_WORKERS_FROM = 4_000_000
LATE_WORKER_BLOCK = 100_000

ClientAddressMode = Literal["unique", "shared-24", "single"]


def _indexed(second: int, index: int) -> str:
    if not 0 <= index < 250 * 250:
        raise ValueError(f"index {index} out of range")
    return f"127.{second}.{index // 250}.{index % 250 + 1}"


def node_ip(index: int) -> str:
    return _indexed(2, index)


def tier_pod_ip(index: int) -> str:
    return _indexed(3, index)


def app_pod_ip(index: int) -> str:
    return _indexed(4, index)


def client_address(index: int, mode: ClientAddressMode = "unique") -> str:
    """The source address of simulated client number ``index``."""
    if index < 0:
        raise ValueError("client index must be >= 0")
    if mode == "single":
        return "127.201.0.1"
    if mode == "shared-24":
        return f"127.200.0.{index % 254 + 1}"
    if mode != "unique":
        raise ValueError(f"unknown client address mode {mode!r} (unique, shared-24, single)")
    # second octet 64..191 varies fastest, then the third, then the fourth: consecutive clients never share a /24
    # and all 32,768 first clients have a /24 each.
    second = 64 + index % 128
    third = (index // 128) % 256
    fourth = 1 + (index // 32768) % 254
    return f"127.{second}.{third}.{fourth}"


def worker_client_index(k: int, worker_index: int, workers: int) -> int:
    """The client number of the ``k``-th client of a worker: the first ``workers`` workers interleave (together
    they number clients 0, 1, 2, … as one process would, so shared-24 and single keep their meaning), later
    workers take a block each; no two workers share a number."""
    if 0 <= worker_index < workers:
        return worker_index + workers * k
    return LATE_WORKERS_FROM + worker_index * LATE_WORKER_BLOCK + k
