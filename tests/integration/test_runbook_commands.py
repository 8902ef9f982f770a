"""docs/runbook.md's admin commands, run as written (bash, curl) against a real Envoy with the
filter after some traffic: the reloadable LDS setup (so /config_dump has dynamic listeners),
with inline credentials (so a careless dump would show the secret). Each command must succeed
(curl --fail) and print something; the /config_dump one must print no secret. The one the
runbook says never to run is left out. The commands of the credential sections (static keys
define no credential series) run against an Envoy with rotating credentials from an IMDS
stand-in (tests/credstub.py), once it holds some: they must print something, and never the
secret it handed out."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import ACCESS_KEY, SECRET_KEY, poll

from stack import REPO_ROOT, filter_config, raw_request

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/
from credstub import CredStub  # noqa: E402

RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
ROTATING_KEY, ROTATING_SECRET = "AKIDRUNBOOKROTATING1", "runbook-rotating/SECRET+1"


def runbook_commands(credentials: bool) -> list[str]:
    """Every `curl … $ADMIN…` of the runbook, but on the lines that say **Never**: those of the
    sections about rotating credentials (a heading with "Credential"), or of all the others."""
    parts = re.split(r"^## (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    sections = [("", parts[0])] + list(zip(parts[1::2], parts[2::2]))
    text = "\n".join(body for heading, body in sections if ("Credential" in heading) == credentials)
    lines = [line for line in text.splitlines() if "**Never**" not in line]
    return re.findall(r"`(curl [^`]*\$ADMIN[^`]*)`", "\n".join(lines))


def run(command: str, admin_port: int) -> str:
    env = {"PATH": "/usr/bin:/bin", "ADMIN": f"http://127.0.0.1:{admin_port}", "ORIGIN": "media"}
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command.replace("curl ", "curl --fail -sS ", 1)],
                          env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip(), f"{command}: rc {done.returncode}\n{done.stderr}"
    return done.stdout


def test_the_runbooks_admin_commands_work(start_lds_envoy, seaweedfs):
    config = filter_config(seaweedfs.s3_port, credentials={
        "source": "inline", "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY})
    envoy = start_lds_envoy(config)
    seaweedfs.client().put_object(Bucket=seaweedfs.bucket, Key="runbook.txt", Body=b"runbook")
    for _ in range(3):
        assert raw_request(envoy.port, "GET", "/media/runbook.txt").status == 200

    commands = runbook_commands(credentials=False)
    assert len(commands) >= 8, commands
    try:
        for command in commands:
            out = run(command, envoy.admin_port)
            assert SECRET_KEY not in out, command
            if "config_dump" in command:
                assert "version_info" in out and "secret_access_key" not in out, out
            if "logging?wasm=" in command:
                level = command.split("logging?wasm=")[1].split('"')[0]
                assert re.search(rf"\bwasm: {level}\b", out), out
    finally:  # whatever failed, the Wasm logger goes back to info
        subprocess.run(["curl", "-s", "-X", "POST", f"http://127.0.0.1:{envoy.admin_port}/logging?wasm=info"],
                       capture_output=True)


def test_the_runbooks_credential_commands_work(start_envoy, seaweedfs):
    with CredStub({ROTATING_KEY: ROTATING_SECRET}, lifetime_s=3600) as stub:
        cluster = {"name": "presign_imds", "type": "STATIC", "connect_timeout": "1s",
                   "load_assignment": {"cluster_name": "presign_imds", "endpoints": [{"lb_endpoints": [
                       {"endpoint": {"address": {"socket_address": {
                           "address": "127.0.0.1", "port_value": stub.port("imds")}}}}]}]}}
        envoy = start_envoy(filter_config(seaweedfs.s3_port, credentials={"source": "imds"}),
                            extra_list_items={"clusters": [cluster]})
        refreshed = "wasmcustom.envoy_presign.credential_refreshes.source.imds.result.success"
        stats = poll(envoy.stats, lambda s: s.get(refreshed, 0) >= 1 and
                     s.get("wasmcustom.envoy_presign.credential_expiry_seconds", 0) > 0, timeout=15)
        assert stats.get(refreshed) == 1, stats

        commands = runbook_commands(credentials=True)
        assert len(commands) >= 5, commands
        for command in commands:
            out = run(command, envoy.admin_port)
            assert ROTATING_SECRET not in out, command
        # The labels the stats_tags of envoy/envoy.yaml give (the rules and the dashboard use them).
        labelled = run('curl -s "$ADMIN/stats/prometheus" | grep "^envoy_presign_credential"', envoy.admin_port)
        assert 'envoy_presign_credential_refreshes{source="imds",result="success"} 1' in labelled, labelled
        assert 'envoy_presign_credential_refreshes{source="imds",result="dispatch_error"} 0' in labelled, labelled
        assert re.search(r"^envoy_presign_credential_expiry_seconds(\{\})? [1-9]", labelled, re.MULTILINE), labelled
        assert re.search(r"^envoy_presign_credential_last_failure(\{\})? 0$", labelled, re.MULTILINE), labelled
