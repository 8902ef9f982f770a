"""docs/runbook.md's admin commands, run as written (bash, curl) against a real Envoy with the
filter after some traffic: the reloadable LDS setup (so /config_dump has dynamic listeners),
with inline credentials (so a careless dump would show the secret). Each command must succeed
(curl --fail) and print something; the /config_dump one must print no secret. The one the
runbook says never to run is left out."""

from __future__ import annotations

import re
import subprocess

from conftest import ACCESS_KEY, SECRET_KEY

from stack import REPO_ROOT, filter_config, raw_request

RUNBOOK = REPO_ROOT / "docs" / "runbook.md"


def runbook_commands() -> list[str]:
    """Every `curl … $ADMIN…` of the runbook, but on the lines that say **Never**."""
    lines = [line for line in RUNBOOK.read_text().splitlines() if "**Never**" not in line]
    return re.findall(r"`(curl [^`]*\$ADMIN[^`]*)`", "\n".join(lines))


def test_the_runbooks_admin_commands_work(start_lds_envoy, seaweedfs):
    config = filter_config(seaweedfs.s3_port, credentials={
        "source": "inline", "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY})
    envoy = start_lds_envoy(config)
    seaweedfs.client().put_object(Bucket=seaweedfs.bucket, Key="runbook.txt", Body=b"runbook")
    for _ in range(3):
        assert raw_request(envoy.port, "GET", "/media/runbook.txt").status == 200

    commands = runbook_commands()
    assert len(commands) >= 8, commands
    env = {"PATH": "/usr/bin:/bin", "ADMIN": f"http://127.0.0.1:{envoy.admin_port}", "ORIGIN": "media"}
    try:
        for command in commands:
            done = subprocess.run(["bash", "-o", "pipefail", "-c", command.replace("curl ", "curl --fail -sS ", 1)],
                                  env=env, capture_output=True, text=True, timeout=30)
            assert done.returncode == 0 and done.stdout.strip(), f"{command}: rc {done.returncode}\n{done.stderr}"
            assert SECRET_KEY not in done.stdout, command
            if "config_dump" in command:
                assert "version_info" in done.stdout and "secret_access_key" not in done.stdout, done.stdout
            if "logging?wasm=" in command:
                level = command.split("logging?wasm=")[1].split('"')[0]
                assert re.search(rf"\bwasm: {level}\b", done.stdout), done.stdout
    finally:  # whatever failed, the Wasm logger goes back to info
        subprocess.run(["curl", "-s", "-X", "POST", f"{env['ADMIN']}/logging?wasm=info"], capture_output=True)
