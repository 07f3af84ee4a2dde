from __future__ import annotations

import ipaddress

import pytest

from harness.net.addresses import app_pod_ip, client_address, node_ip, tier_pod_ip


def test_unique_clients_each_have_a_slash_24_of_their_own() -> None:
    addrs = [client_address(i) for i in range(5000)]
    assert len(set(addrs)) == 5000
    assert len({a.rsplit(".", 1)[0] for a in addrs}) == 5000  # distinct /24s: ip_hash sees them apart
    assert all(ipaddress.ip_address(a).is_loopback for a in addrs)


def test_shared_24_and_single_modes() -> None:
    shared = {client_address(i, "shared-24") for i in range(300)}
    assert len({a.rsplit(".", 1)[0] for a in shared}) == 1 and len(shared) == 254
    assert {client_address(i, "single") for i in range(10)} == {"127.201.0.1"}


def test_roles_never_overlap_with_clients() -> None:
    infra = {node_ip(i) for i in range(20)} | {tier_pod_ip(i) for i in range(50)} | {app_pod_ip(i) for i in range(100)}
    clients = {client_address(i) for i in range(40000)} | {
        client_address(0, "shared-24"),
        client_address(0, "single"),
    }
    assert not infra & clients


def test_bad_mode_and_index() -> None:
    with pytest.raises(ValueError, match="unknown client address mode"):
        client_address(1, "corporate")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        client_address(-1)
