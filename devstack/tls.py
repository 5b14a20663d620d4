"""A development certificate authority and the certificates of a Temporal cluster's mTLS.

`issue_cluster_certs(directory)` writes, once per directory, a CA and two certificates it
signs: the servers' (frontend and internode, also presented as the client certificate of
one service calling another) and a client's (SDK clients: workers, the service, tests, and
Temporal's own system worker). Files are written atomically and reused while they are
valid; nothing here is for production, where certificates come from the operator's PKI.

ECDSA P-256 throughout: accepted by Go's TLS (the server) and rustls (the SDK core), and
quick to generate. The private keys are written 0600.
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

# The name every server certificate carries and clients verify (with 127.0.0.1 as an IP SAN).
SERVER_NAME = "localhost"
CLIENT_NAME = "petition-flow-client"
VALIDITY = datetime.timedelta(days=30)
# Reissued once less than this is left, so a cached set never expires during a run.
RENEW_BEFORE = datetime.timedelta(days=2)


@dataclass(frozen=True)
class ClusterCerts:
    """Paths of the PEM files of one cluster's certificates."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / "client.key"

    def all_files(self) -> tuple[Path, ...]:
        return (self.ca_cert, self.server_cert, self.server_key, self.client_cert,
                self.client_key)


def issue_cluster_certs(directory: Path) -> ClusterCerts:
    """The CA, server and client certificates under `directory`, issued if missing or due."""
    certs = ClusterCerts(directory)
    if all(path.is_file() for path in certs.all_files()) and _still_valid(certs):
        return certs
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "petition-flow dev CA")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key, server_cert = _leaf(
        ca_cert, ca_key, "temporal-cluster", now,
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        [x509.DNSName(SERVER_NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_key, client_cert = _leaf(
        ca_cert, ca_key, CLIENT_NAME, now, [ExtendedKeyUsageOID.CLIENT_AUTH],
        [x509.DNSName(CLIENT_NAME)])
    # Keys before certificates, the CA last: a set is complete once ca.pem is in place.
    _write(certs.server_key, _key_pem(server_key), private=True)
    _write(certs.client_key, _key_pem(client_key), private=True)
    _write(certs.server_cert, server_cert.public_bytes(serialization.Encoding.PEM))
    _write(certs.client_cert, client_cert.public_bytes(serialization.Encoding.PEM))
    _write(certs.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    return certs


def _leaf(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, common_name: str,
          now: datetime.datetime, usages: list[x509.ObjectIdentifier],
          names: list[x509.GeneralName]) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             now: datetime.datetime) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(partial, path)


def _still_valid(certs: ClusterCerts) -> bool:
    horizon = datetime.datetime.now(datetime.UTC) + RENEW_BEFORE
    for path in (certs.ca_cert, certs.server_cert, certs.client_cert):
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except ValueError:
            return False
        if cert.not_valid_after_utc < horizon:
            return False
    return True
