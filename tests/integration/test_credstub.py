"""The credentials stand-in (tests/credstub.py) speaks IMDSv2, the container endpoint and
STS the way real clients expect, its faults behave as documented, and the credentials it
issues are accepted by a real SeaweedFS until they expire.  Also the SeaweedFS facts the
rotating-credentials tests build on: a session token SeaweedFS did not issue is refused,
and an identity can be revoked and granted at run time (SIGHUP reload).

No Envoy and no filter build: the whole module runs in a few seconds.
"""

from __future__ import annotations

import datetime as dt
import http.client as httplib
import json
import secrets
import socket
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.utils import ContainerMetadataFetcher, InstanceMetadataFetcher

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/

from credstub import (  # noqa: E402
    ECS_RELATIVE_PATH,
    GARBAGE,
    POD_IDENTITY_PATH,
    CredStub,
    KeyPool,
    ProjectedToken,
    SeaweedFSSessions,
    sign_get,
)
from stack import REGION, SeaweedFS  # noqa: E402

ACCESS_KEY = "AKIDCREDSTUBADMIN01"
SECRET_KEY = "credstub-admin/SECRET+key=01"
POOL = {"AKIDCREDSTUBPOOL001": "credstub-pool/SECRET+001", "AKIDCREDSTUBPOOL002": "credstub-pool/SECRET+002"}
# Long-term credentials the stub's STS accepts as AssumeRole signers.
BASE_ACCESS_KEY = "AKIDCREDSTUBBASE001"
BASE_SECRET_KEY = "credstub-base/SECRET+001"
STS_REGION = "eu-west-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/presign-target"
OBJECT_KEY = "credstub/hello.txt"
OBJECT_BODY = b"hello from credstub\n"


@pytest.fixture(scope="module")
def wasm_path():
    """Overrides the suite's autouse fixture: nothing here needs the filter."""
    return None


@pytest.fixture(scope="module")
def kek() -> str:
    return secrets.token_hex(32)


@pytest.fixture(scope="module")
def origin(tmp_path_factory, kek: str):
    with SeaweedFS(tmp_path_factory.mktemp("credstub-origin"), ACCESS_KEY, SECRET_KEY,
                   extra_identities=POOL, sse_kek=kek) as s3:
        s3.client().put_object(Bucket=s3.bucket, Key=OBJECT_KEY, Body=OBJECT_BODY)
        yield s3


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, ProjectedToken]:
    return {"web": ProjectedToken(tmp_path / "irsa", "eyJ.web-identity.one\n"),
            "pod": ProjectedToken(tmp_path / "pod-identity", "eyJ.pod-identity.one\n",
                                  name="eks-pod-identity-token")}


@pytest.fixture
def stub(kek: str, tokens: dict[str, ProjectedToken]):
    with CredStub(SeaweedFSSessions(kek), lifetime_s=900, role_name="presign-role",
                  pod_identity_token_file=tokens["pod"].path, web_identity_token_file=tokens["web"].path,
                  base_credentials={BASE_ACCESS_KEY: BASE_SECRET_KEY}, region=STS_REGION,
                  slow_s=0.4) as running:
        yield running


def fetch(port: int, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = httplib.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def sts_client(stub: CredStub, access_key: str, secret_key: str, token: str | None = None):
    return boto3.client("sts", endpoint_url=stub.endpoint("sts"), region_name=STS_REGION,
                        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                        aws_session_token=token, config=Config(retries={"max_attempts": 1}))


def s3_client(origin: SeaweedFS, access_key: str, secret_key: str, token: str | None = None):
    return boto3.client("s3", endpoint_url=origin.endpoint, region_name=REGION,
                        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                        aws_session_token=token,
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


def error_code(call) -> tuple[int, str]:
    with pytest.raises(ClientError) as info:
        call()
    return info.value.response["ResponseMetadata"]["HTTPStatusCode"], info.value.response["Error"]["Code"]


def amz_now(offset_s: float = 0) -> str:
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=offset_s)).strftime("%Y%m%dT%H%M%SZ")


# ---------------------------------------------------------------------------
# IMDSv2
# ---------------------------------------------------------------------------


def test_imds_botocore_fetcher_gets_the_issued_credentials(stub: CredStub):
    stub.lifetime_s = 3600  # botocore pushes an expiry less than 15 min away further out
    fetched = InstanceMetadataFetcher(timeout=2, num_attempts=1,
                                      base_url=stub.endpoint("imds")).retrieve_iam_role_credentials()
    [issued] = stub.issued("imds")
    assert fetched == {"role_name": "presign-role", "access_key": issued.access_key,
                       "secret_key": issued.secret_key, "token": issued.token,
                       "expiry_time": dt.datetime.fromtimestamp(issued.expires_at, dt.timezone.utc)
                       .strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert issued.expires_at - issued.issued_at in (3599, 3600)
    assert [(r.method, r.path, r.status) for r in stub.requests("imds")] == [
        ("PUT", "/latest/api/token", 200),
        ("GET", "/latest/meta-data/iam/security-credentials/", 200),
        ("GET", "/latest/meta-data/iam/security-credentials/presign-role", 200)]


def test_imds_token_rules(kek: str):
    now = [1_800_000_000.0]
    with CredStub(SeaweedFSSessions(kek), clock=lambda: now[0]) as stub:
        port = stub.port("imds")
        ttl = "x-aws-ec2-metadata-token-ttl-seconds"
        assert fetch(port, "PUT", "/latest/api/token")[0] == 400
        for bad in ("0", "21601", "-1", "abc"):
            assert fetch(port, "PUT", "/latest/api/token", {ttl: bad})[0] == 400, bad
        assert fetch(port, "PUT", "/latest/api/token", {ttl: "60", "X-Forwarded-For": "10.0.0.1"})[0] == 403
        status, headers, token = fetch(port, "PUT", "/latest/api/token", {ttl: "60"})
        assert (status, headers[ttl]) == (200, "60") and len(token) > 20
        creds = "/latest/meta-data/iam/security-credentials/"
        assert fetch(port, "GET", creds)[0] == 401
        assert fetch(port, "GET", creds, {"x-aws-ec2-metadata-token": "forged"})[0] == 401
        auth = {"x-aws-ec2-metadata-token": token.decode()}
        assert fetch(port, "GET", creds, auth)[:3:2] == (200, b"presign-role")
        assert fetch(port, "GET", creds + "other-role", auth)[0] == 404
        status, _, body = fetch(port, "GET", creds + "presign-role", auth)
        doc = json.loads(body)
        assert (status, doc["Code"], doc["Type"]) == (200, "Success", "AWS-HMAC")
        assert doc["Expiration"].endswith("Z") and doc["LastUpdated"].endswith("Z")
        assert {"AccessKeyId", "SecretAccessKey", "Token"} <= doc.keys()
        now[0] += 60  # the token's TTL has run out
        assert fetch(port, "GET", creds, auth)[0] == 401
        assert fetch(port, "PUT", "/latest/api/token", {ttl: "21600"})[0] == 200


# ---------------------------------------------------------------------------
# Container endpoint (ECS relative URI, EKS Pod Identity)
# ---------------------------------------------------------------------------


def test_container_endpoint_ecs_and_pod_identity(stub: CredStub, tokens: dict[str, ProjectedToken]):
    fetcher = ContainerMetadataFetcher()
    ecs = fetcher.retrieve_full_uri(stub.endpoint("container") + ECS_RELATIVE_PATH)
    pod = fetcher.retrieve_full_uri(stub.endpoint("container") + POD_IDENTITY_PATH,
                                    headers={"Authorization": "eyJ.pod-identity.one"})
    issued = stub.issued("container")
    assert [i.endpoint for i in issued] == [f"container:{ECS_RELATIVE_PATH}", f"container:{POD_IDENTITY_PATH}"]
    for doc, record in zip((ecs, pod), issued):
        assert (doc["AccessKeyId"], doc["SecretAccessKey"], doc["Token"]) == (
            record.access_key, record.secret_key, record.token)
        assert doc["RoleArn"].endswith(":role/presign-role") and doc["Expiration"].endswith("Z")

    port = stub.port("container")
    assert fetch(port, "GET", POD_IDENTITY_PATH)[0] == 401
    assert fetch(port, "GET", POD_IDENTITY_PATH, {"Authorization": "eyJ.wrong"})[0] == 401
    tokens["pod"].write("eyJ.pod-identity.two\n")  # rotation: only the current content passes
    assert fetch(port, "GET", POD_IDENTITY_PATH, {"Authorization": "eyJ.pod-identity.one"})[0] == 401
    assert fetch(port, "GET", POD_IDENTITY_PATH, {"Authorization": "eyJ.pod-identity.two"})[0] == 200
    assert fetch(port, "GET", "/v2/credentials/unknown")[0] == 404


def test_issuance_is_thread_safe_and_lifetime_changes_at_run_time(stub: CredStub):
    port = stub.port("container")
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda _: fetch(port, "GET", ECS_RELATIVE_PATH)[0], range(48)))
    assert statuses == [200] * 48
    issued = stub.issued("container")
    assert len(issued) == 48 == len({i.access_key for i in issued}) == len(stub.requests("container"))
    stub.lifetime_s = 30
    doc = json.loads(fetch(port, "GET", ECS_RELATIVE_PATH)[2])
    last = stub.issued()[-1]
    assert last.expires_at - last.issued_at in (29, 30) and doc["AccessKeyId"] == last.access_key


# ---------------------------------------------------------------------------
# STS
# ---------------------------------------------------------------------------


def test_sts_assume_role_boto3_and_bad_signatures(stub: CredStub):
    creds = sts_client(stub, BASE_ACCESS_KEY, BASE_SECRET_KEY).assume_role(
        RoleArn=ROLE_ARN, RoleSessionName="envoy-presign", DurationSeconds=900)["Credentials"]
    [issued] = stub.issued("sts")
    assert (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]) == (
        issued.access_key, issued.secret_key, issued.token)
    assert creds["Expiration"].timestamp() == issued.expires_at  # XML, RFC 3339 with millis
    record = stub.requests("sts")[-1]
    assert (record.method, record.status, record.caller, record.issued) == ("POST", 200, BASE_ACCESS_KEY,
                                                                             issued.access_key)

    wrong = sts_client(stub, BASE_ACCESS_KEY, "not-the-secret")
    assert error_code(lambda: wrong.assume_role(RoleArn=ROLE_ARN, RoleSessionName="s1")) == (
        403, "SignatureDoesNotMatch")
    unknown = sts_client(stub, "AKIDUNKNOWN00000000", BASE_SECRET_KEY)
    assert error_code(lambda: unknown.assume_role(RoleArn=ROLE_ARN, RoleSessionName="s1")) == (
        403, "InvalidClientTokenId")

    # Role chaining: the issued temporary credentials sign the next AssumeRole, token included.
    chained = sts_client(stub, issued.access_key, issued.secret_key, issued.token)
    assert chained.assume_role(RoleArn=ROLE_ARN, RoleSessionName="chained")["Credentials"]["AccessKeyId"]
    assert stub.requests("sts")[-1].caller == issued.access_key
    no_token = sts_client(stub, issued.access_key, issued.secret_key)
    assert error_code(lambda: no_token.assume_role(RoleArn=ROLE_ARN, RoleSessionName="s1")) == (
        403, "InvalidClientTokenId")
    stub.lifetime_s = 0  # issued already expired
    dead = sts_client(stub, BASE_ACCESS_KEY, BASE_SECRET_KEY).assume_role(
        RoleArn=ROLE_ARN, RoleSessionName="dead")["Credentials"]
    expired = sts_client(stub, dead["AccessKeyId"], dead["SecretAccessKey"], dead["SessionToken"])
    assert error_code(lambda: expired.assume_role(RoleArn=ROLE_ARN, RoleSessionName="s1")) == (
        403, "ExpiredToken")


def test_sts_signed_get_json_as_the_filter_sends_it(stub: CredStub):
    host = f"127.0.0.1:{stub.port('sts')}"
    params = {"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": ROLE_ARN,
              "RoleSessionName": "envoy-presign@pod+1", "ExternalId": "ext/id=1 2", "DurationSeconds": "900"}
    [(path, headers)] = sign_get(host, params, BASE_ACCESS_KEY, BASE_SECRET_KEY, None, amz_now()).items()
    status, resp_headers, body = fetch(stub.port("sts"), "GET", path, headers)
    assert (status, resp_headers["content-type"]) == (200, "application/json"), body
    result = json.loads(body)["AssumeRoleResponse"]["AssumeRoleResult"]
    [issued] = stub.issued("sts")
    assert result["Credentials"] == {"AccessKeyId": issued.access_key, "SecretAccessKey": issued.secret_key,
                                     "SessionToken": issued.token, "Expiration": issued.expires_at}
    assert result["AssumedRoleUser"]["Arn"].endswith(":assumed-role/presign-target/envoy-presign@pod+1")

    # A request signed more than 5 minutes ago (or ahead) is refused.
    for offset in (-400, 400):
        [(path, headers)] = sign_get(host, params, BASE_ACCESS_KEY, BASE_SECRET_KEY, None,
                                     amz_now(offset)).items()
        status, _, body = fetch(stub.port("sts"), "GET", path, headers)
        error = ET.fromstring(body).find("{*}Error")
        assert (status, error.findtext("{*}Code"), error.findtext("{*}Type")) == (
            403, "SignatureDoesNotMatch", "Sender"), body
        assert "Signature expired" in error.findtext("{*}Message")
    # Signed for another region, or a tampered parameter.
    [(path, headers)] = sign_get(host, params, BASE_ACCESS_KEY, BASE_SECRET_KEY, None, amz_now(),
                                 region="us-east-1").items()
    assert fetch(stub.port("sts"), "GET", path, headers)[0] == 403
    [(path, headers)] = sign_get(host, params, BASE_ACCESS_KEY, BASE_SECRET_KEY, None, amz_now()).items()
    assert fetch(stub.port("sts"), "GET", path.replace("900", "901"), headers)[0] == 403
    # Temporary credentials sign with their token; XML without Accept: application/json.
    [(path, headers)] = sign_get(host, params, issued.access_key, issued.secret_key, issued.token,
                                 amz_now()).items()
    del headers["accept"]
    status, _, body = fetch(stub.port("sts"), "GET", path, headers)
    root = ET.fromstring(body)
    expiration = root.find("{*}AssumeRoleResult/{*}Credentials/{*}Expiration").text
    assert status == 200 and expiration.endswith(".000Z"), body


def test_sts_external_id_required(kek: str):
    with CredStub(SeaweedFSSessions(kek), base_credentials={BASE_ACCESS_KEY: BASE_SECRET_KEY},
                  region=STS_REGION, external_id="expected-external-id") as stub:
        client = sts_client(stub, BASE_ACCESS_KEY, BASE_SECRET_KEY)
        assert error_code(lambda: client.assume_role(RoleArn=ROLE_ARN, RoleSessionName="s1")) == (
            403, "AccessDenied")
        assert error_code(lambda: client.assume_role(RoleArn=ROLE_ARN, RoleSessionName="s1",
                                                     ExternalId="other")) == (403, "AccessDenied")
        assert client.assume_role(RoleArn=ROLE_ARN, RoleSessionName="s1", ExternalId="expected-external-id")


def test_sts_web_identity_reads_the_current_token(stub: CredStub, tokens: dict[str, ProjectedToken]):
    anonymous = boto3.client("sts", endpoint_url=stub.endpoint("sts"), region_name=STS_REGION,
                             config=Config(signature_version=botocore_unsigned(), retries={"max_attempts": 1}))

    def assume(token: str):
        return anonymous.assume_role_with_web_identity(RoleArn=ROLE_ARN, RoleSessionName="irsa",
                                                       WebIdentityToken=token)

    creds = assume("eyJ.web-identity.one")["Credentials"]
    [issued] = stub.issued("sts")
    assert (issued.endpoint, creds["AccessKeyId"]) == ("sts:AssumeRoleWithWebIdentity", issued.access_key)
    tokens["web"].write("eyJ.web-identity.two\n")
    assert error_code(lambda: assume("eyJ.web-identity.one")) == (400, "InvalidIdentityToken")
    assert assume("eyJ.web-identity.two")["Credentials"]["AccessKeyId"]

    # The filter's form: GET, JSON; the token never reaches the request log.
    query = urllib.parse.urlencode({"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15",
                                    "RoleArn": ROLE_ARN, "RoleSessionName": "irsa",
                                    "WebIdentityToken": "eyJ.web-identity.two"}, quote_via=urllib.parse.quote)
    status, _, body = fetch(stub.port("sts"), "GET", "/?" + query, {"Accept": "application/json"})
    response = json.loads(body)["AssumeRoleWithWebIdentityResponse"]
    assert status == 200 and response["AssumeRoleWithWebIdentityResult"]["Credentials"]["Expiration"] > time.time()
    assert all("web-identity" not in r.path for r in stub.requests())
    assert stub.requests("sts")[-1].path.endswith("WebIdentityToken=REDACTED")


def botocore_unsigned():
    from botocore import UNSIGNED
    return UNSIGNED


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------


def test_fault_modes(stub: CredStub):
    port = stub.port("container")

    def get() -> tuple[int, bytes]:
        status, _, body = fetch(port, "GET", ECS_RELATIVE_PATH)
        return status, body

    # A kept-alive connection is cut when the endpoint goes down, and the port refuses.
    keep = httplib.HTTPConnection("127.0.0.1", port, timeout=5)
    keep.request("GET", ECS_RELATIVE_PATH)
    assert keep.getresponse().read() and True
    stub.set_mode("container", "down")
    with pytest.raises((ConnectionError, httplib.HTTPException, OSError)):
        keep.request("GET", ECS_RELATIVE_PATH)
        keep.getresponse().read()
    keep.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert fetch(stub.port("imds"), "PUT", "/latest/api/token",
                {"x-aws-ec2-metadata-token-ttl-seconds": "60"})[0] == 200  # other kinds still up
    stub.set_mode("container", "ok")
    assert stub.port("container") == port and get()[0] == 200

    stub.set_mode("container", "slow", slow_s=0.4)
    started = time.monotonic()
    assert get()[0] == 200 and time.monotonic() - started >= 0.4

    stub.set_mode("container", "garbage")
    status, body = get()
    assert (status, body) == (200, GARBAGE)
    with pytest.raises(ValueError):
        json.loads(body)
    with pytest.raises(ET.ParseError):
        ET.fromstring(body)

    stub.set_mode("all", "500")
    assert get()[0] == 500
    assert fetch(stub.port("sts"), "GET", "/?Action=AssumeRole")[0] == 500
    stub.set_mode("all", "down")
    for kind in ("imds", "container", "sts"):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", stub.port(kind)), timeout=2).close()
    stub.set_mode("all", "ok")
    assert get()[0] == 200
    assert [(r.mode, r.status) for r in stub.requests("container")] == [
        ("ok", 200), ("ok", 200), ("slow", 200), ("garbage", 200), ("500", 500), ("ok", 200)]
    assert not stub.issued("imds")  # a fault issues nothing


def test_stop_frees_ports_and_threads(kek: str):
    before = threading.active_count()
    stub = CredStub(SeaweedFSSessions(kek), slow_s=30).start()
    ports = dict(stub.ports)
    stub.set_mode("sts", "slow")
    waiting = threading.Thread(target=lambda: _swallow(lambda: fetch(ports["sts"], "GET", "/")))
    waiting.start()
    time.sleep(0.1)
    started = time.monotonic()
    stub.stop()
    waiting.join(timeout=5)
    assert time.monotonic() - started < 3  # a slow handler does not hold stop() up
    for port in ports.values():
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        with socket.socket() as sock:  # free again (SO_REUSEADDR: the cut connection's TIME_WAIT)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
    assert threading.active_count() <= before


def _swallow(call) -> None:
    try:
        call()
    except OSError:
        pass


# ---------------------------------------------------------------------------
# Against the real SeaweedFS
# ---------------------------------------------------------------------------


def test_issued_keys_work_against_seaweedfs_until_they_expire(stub: CredStub, origin: SeaweedFS):
    fetched = InstanceMetadataFetcher(timeout=2, num_attempts=1,
                                      base_url=stub.endpoint("imds")).retrieve_iam_role_credentials()
    s3 = s3_client(origin, fetched["access_key"], fetched["secret_key"], fetched["token"])
    assert s3.get_object(Bucket=origin.bucket, Key=OBJECT_KEY)["Body"].read() == OBJECT_BODY
    assert s3.list_objects_v2(Bucket=origin.bucket)["KeyCount"] >= 1
    assert error_code(lambda: s3.put_object(Bucket=origin.bucket, Key="x", Body=b"x")) == (403, "AccessDenied")

    # A presigned URL made with an STS issuance of 3 s: accepted, then refused at expiry. (With
    # 1 s, a slow machine once took longer than that to make the URL: its first request came
    # after the expiry.)
    stub.lifetime_s = 3.0
    creds = sts_client(stub, BASE_ACCESS_KEY, BASE_SECRET_KEY).assume_role(
        RoleArn=ROLE_ARN, RoleSessionName="short")["Credentials"]
    issued = stub.issued("sts")[-1]
    url = urllib.parse.urlsplit(s3_client(origin, creds["AccessKeyId"], creds["SecretAccessKey"],
                                          creds["SessionToken"]).generate_presigned_url(
        "get_object", Params={"Bucket": origin.bucket, "Key": OBJECT_KEY}, ExpiresIn=600))
    assert "X-Amz-Security-Token=" in url.query
    statuses = []
    while time.time() < issued.expires_at + 1.5:
        status, _, body = fetch(origin.s3_port, "GET", f"{url.path}?{url.query}")
        statuses.append((time.time(), status, body))
        if status != 200:
            break
        time.sleep(0.05)
    refused_at, status, body = statuses[-1]
    assert status == 403 and b"InvalidAccessKeyId" in body
    assert issued.expires_at <= refused_at < issued.expires_at + 0.5
    assert all(s == 200 for t, s, _ in statuses[:-1]) and statuses[0][1] == 200


def test_seaweedfs_refuses_a_session_token_it_did_not_issue(origin: SeaweedFS):
    """Finding: SeaweedFS 4.48 validates any X-Amz-Security-Token as its own STS JWT, so a
    long-term key with a random token (KeyPool) is refused: 403 InvalidAccessKeyId."""
    access_key, secret, token = KeyPool(POOL).issue(0, 0)
    assert s3_client(origin, access_key, secret).get_object(Bucket=origin.bucket, Key=OBJECT_KEY)
    assert error_code(lambda: s3_client(origin, access_key, secret, token).get_object(
        Bucket=origin.bucket, Key=OBJECT_KEY)) == (403, "InvalidAccessKeyId")


def test_seaweedfs_revoke_and_grant_at_run_time(origin: SeaweedFS):
    (first, first_secret), (second, second_secret) = POOL.items()
    assert origin.key_status(first, first_secret) == "OK"
    revoke_s = origin.revoke(first)
    assert origin.key_status(first, first_secret) == "InvalidAccessKeyId"
    assert origin.key_status(second, second_secret) == "OK"
    assert origin.key_status(ACCESS_KEY, SECRET_KEY) == "OK"
    grant_s = origin.grant(first, first_secret)
    new_key, new_secret = "AKIDCREDSTUBNEW0001", "credstub-new/SECRET+001"
    assert origin.key_status(new_key, new_secret) == "InvalidAccessKeyId"
    new_s = origin.grant(new_key, new_secret)
    assert origin.key_status(first, first_secret) == "OK"
    assert max(revoke_s, grant_s, new_s) < 2.0
    print(f"\nSeaweedFS SIGHUP reload: revoked in {revoke_s * 1000:.0f} ms, re-granted in "
          f"{grant_s * 1000:.0f} ms, new key granted in {new_s * 1000:.0f} ms")
