"""The REST gateway on 41001 (API keys) and Prometheus metrics on 41002.

Both listen on 127.0.0.1 of the daemon's own namespace; requests are sent from inside it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from hypr.sandbox import BIN, Hyprd, in_ns


def curl(hyprd: Hyprd, url: str, *args: str) -> tuple[int, str]:
    out = in_ns(hyprd.netns, "curl", "-s", "-w", "\n%{http_code}", *args, url).stdout
    body, _, code = out.rpartition("\n")
    return int(code), body


def test_gateway_requires_a_valid_key(hyprd: Hyprd) -> None:
    status, body = curl(hyprd, "http://127.0.0.1:41001/networks")
    assert status == 401 and "API key" in json.loads(body)["message"]
    key = hyprd.ok("apikey", "create", "ci").strip()
    assert key.startswith("hypr_")
    status, body = curl(
        hyprd, "http://127.0.0.1:41001/networks", "-H", f"Authorization: Bearer {key}"
    )
    assert status == 200 and json.loads(body)[0]["Name"] == "bridge"
    status, _ = curl(
        hyprd, "http://127.0.0.1:41001/networks", "-H", "Authorization: Bearer hypr_wrong"
    )
    assert status == 401
    # keys are managed over the Unix socket only, even with a valid key
    status, _ = curl(hyprd, "http://127.0.0.1:41001/apikeys", "-H", f"Authorization: Bearer {key}")
    assert status == 403
    listing = hyprd.ok("apikey", "ls")
    assert "ci" in listing and key not in listing and "never" not in listing
    # only a hash is stored
    assert key not in str(hyprd.db_rows("SELECT * FROM api_keys"))
    result = hyprd.hypr("apikey", "create", "ci")
    assert result.returncode != 0 and "exists already" in result.stderr
    hyprd.ok("apikey", "rm", "ci")
    status, _ = curl(hyprd, "http://127.0.0.1:41001/networks", "-H", f"Authorization: Bearer {key}")
    assert status == 401


def test_metrics(hyprd: Hyprd) -> None:
    hyprd.ok("network", "create", "extra", "--internal")
    status, body = curl(hyprd, "http://127.0.0.1:41002/metrics")
    assert status == 200
    assert 'hypr_networks{internal="false"} 1.0' in body
    assert 'hypr_networks{internal="true"} 1.0' in body
    assert 'hypr_vms{state="running"} 0.0' in body
    assert "hypr_vm_boot_seconds_bucket" in body


def test_a_listener_that_cannot_bind_stops_hyprd_with_one_line(netns: str, tmp_path: Path) -> None:
    """Metrics asked on the gateway's own address: hyprd says so, exits 1, no traceback."""
    daemon = Hyprd(netns, tmp_path, {"HYPR_METRICS_ADDR": "127.0.0.1:41001"})
    result = subprocess.run(
        ["ip", "netns", "exec", netns, str(BIN / "hyprd")],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "hyprd: a listener could not start" in result.stderr
    assert "Traceback" not in result.stderr
    assert not daemon.socket.exists() and not daemon.run_dir.joinpath("hyprd.pid").exists()
