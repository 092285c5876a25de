"""Throwaway certificates for tests, benchmarks and the sandbox: a CA and leaves it signs."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class KeyPair:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, directory: str | Path, stem: str = "tls") -> tuple[str, str]:
        """Write `<stem>.crt` and `<stem>.key`; returns their paths."""
        crt, key = Path(directory) / f"{stem}.crt", Path(directory) / f"{stem}.key"
        crt.write_bytes(self.cert_pem)
        key.write_bytes(self.key_pem)
        return str(crt), str(key)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    common_name: str,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    days: float,
    expired: bool = False,
    subject: x509.Name | None = None,
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    # An expired certificate was valid for `days` until an hour ago.
    end = now - datetime.timedelta(hours=1) if expired else now + datetime.timedelta(days=days)
    start = end - datetime.timedelta(days=days) if expired else now - datetime.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(subject or _name(common_name))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )


def make_ca(common_name: str = "cocoon-webhook test CA", days: float = 1) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(common_name, _name(common_name), key, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    return KeyPair(key, builder.sign(key, hashes.SHA256()))


def issue(
    ca: KeyPair,
    common_name: str = "localhost",
    *,
    dns: tuple[str, ...] = ("localhost",),
    ips: tuple[str, ...] = ("127.0.0.1",),
    days: float = 1,
    expired: bool = False,
    client: bool = False,
) -> KeyPair:
    """A server certificate signed by `ca` for the given names (what Go's TLS verifier needs:
    names in subjectAltName, serverAuth usage, an authority key id); `client`: a client
    certificate (clientAuth usage) instead."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    builder = (
        _builder(common_name, ca.cert.subject, key, days, expired)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
        )
    )
    return KeyPair(key, builder.sign(ca.key, hashes.SHA256()))


def client(
    ca: KeyPair, common_name: str, *, groups: tuple[str, ...] = (), days: float = 1
) -> KeyPair:
    """A client certificate signed by `ca`: the Kubernetes user `common_name` in `groups`
    (an API server reads the groups from the subject's organizations)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
        + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )
    builder = (
        _builder(common_name, ca.cert.subject, key, days, subject=subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
        )
    )
    return KeyPair(key, builder.sign(ca.key, hashes.SHA256()))


def self_signed(common_name: str = "localhost", ips: tuple[str, ...] = ("127.0.0.1",)) -> KeyPair:
    """One certificate that is its own CA: enough where only one server needs trusting."""
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    builder = (
        _builder(common_name, _name(common_name), key, 1)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    return KeyPair(key, builder.sign(key, hashes.SHA256()))
