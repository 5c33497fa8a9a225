"""TLS for the gateways: a server context from a certificate on disk, or a self-signed one for dev."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


def write_self_signed(directory: Path, hostname: str) -> tuple[Path, Path]:
    """A fresh EC key and a one-year self-signed certificate for `hostname` and 127.0.0.1."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(hostname),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


def certificate_from_env(environ: dict[str, str] | None = None) -> tuple[Path, Path] | None:
    """The certificate and key files: MAILPIPE_TLS_CERT/KEY (paths) or MAILPIPE_TLS_CERT_PEM/KEY_PEM
    (PEM text, as ECS injects secrets), written to a private temporary directory; None if neither."""
    env = os.environ if environ is None else environ
    cert, key = env.get("MAILPIPE_TLS_CERT"), env.get("MAILPIPE_TLS_KEY")
    if cert and key:
        return Path(cert), Path(key)
    cert_pem, key_pem = env.get("MAILPIPE_TLS_CERT_PEM"), env.get("MAILPIPE_TLS_KEY_PEM")
    if cert_pem and key_pem:
        directory = Path(tempfile.mkdtemp(prefix="mailpipe-tls-"))
        (directory / "cert.pem").write_text(cert_pem)
        key_file = directory / "key.pem"
        key_file.touch(mode=0o600)
        key_file.write_text(key_pem)
        return directory / "cert.pem", key_file
    return None
