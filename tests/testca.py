"""A test certificate authority and server certificates, made at run time.

Nothing here is checked in: ``make_pki`` writes a fresh CA and its leaves (PEM, private
keys 0600) into a directory the caller owns and removes, for a store behind TLS in the
tests (tests/integration/test_origin_tls.py) and in ``make run-https``.

The leaves a test of verified TLS needs, for a server name ``name``:

- ``good``: signed by the CA, subject alt names ``name`` and ``*.name`` (the second one is
  the shape of a store serving virtual-hosted buckets, ``<bucket>.name``), valid now;
- ``wrong_name``: signed by the CA, valid now, for another name only;
- ``expired``: signed by the CA, for ``name``, its validity ended a day ago;
- ``unknown_ca``: for ``name``, valid now, signed by another CA nobody trusts.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The name a test store is reached by: no DNS needed, Envoy connects to 127.0.0.1 and sends
# it as SNI; the filter signs for it and the store checks the signature against the Host.
TEST_STORE_NAME = "s3.test.internal"
OTHER_NAME = "other.test.internal"


@dataclass(frozen=True)
class CertPair:
    """A PEM certificate (the leaf only) and its PEM private key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """``ca``: the test CA's certificate (what Envoy's ``trusted_ca`` points at)."""

    name: str
    ca: Path
    good: CertPair
    wrong_name: CertPair
    expired: CertPair
    unknown_ca: CertPair

    def bad(self) -> dict[str, CertPair]:
        """The certificates verified TLS must refuse, by case."""
        return {"wrong_name": self.wrong_name, "expired": self.expired, "unknown_ca": self.unknown_ca}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "envoy-presign tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(_name(common_name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     key_cert_sign=True, crl_sign=True, encipher_only=False,
                                     decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, names: list[str],
          not_before: datetime.datetime, not_after: datetime.datetime,
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0])).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     key_cert_sign=False, crl_sign=False, encipher_only=False,
                                     decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    """The private key, created 0600 (never readable by others, not even for a moment)."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as file:
        file.write(pem)
    return path


def make_pki(directory: Path | str, name: str = TEST_STORE_NAME) -> Pki:
    """A new test CA and the four leaves (see the module's docstring) in ``directory``
    (created 0700 if missing; files must not exist yet)."""
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_cert, ca_key = _ca("envoy-presign test CA")
    rogue_cert, rogue_key = _ca("envoy-presign unknown CA")
    now = _now()
    valid = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1))
    leaves = {
        "good": (ca_cert, ca_key, [name, f"*.{name}"], valid),
        "wrong_name": (ca_cert, ca_key, [OTHER_NAME], valid),
        "expired": (ca_cert, ca_key, [name, f"*.{name}"],
                    (now - datetime.timedelta(days=3), now - datetime.timedelta(days=1))),
        "unknown_ca": (rogue_cert, rogue_key, [name, f"*.{name}"], valid),
    }
    pairs = {}
    for label, (issuer, issuer_key, names, (not_before, not_after)) in leaves.items():
        cert, key = _leaf(issuer, issuer_key, names, not_before, not_after)
        pairs[label] = CertPair(_write_cert(directory / f"{label}.crt", cert),
                                _write_key(directory / f"{label}.key", key))
    # The CA keys are never written: nothing signs after this.
    return Pki(name=name, ca=_write_cert(directory / "ca.crt", ca_cert), **pairs)


if __name__ == "__main__":  # a quick look: python tests/testca.py <dir>
    import sys

    pki = make_pki(sys.argv[1])
    print(pki)
