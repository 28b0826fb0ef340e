"""`mlscope web-config`: write an exporter-toolkit web config with a bcrypt hash, and a self-signed certificate.

    mlscope web-config --user prometheus --password-file pw.txt --tls-dir /etc/mlscope --output web.yml
    printf %s "$PASSWORD" | mlscope web-config --user prometheus > web.yml

The password is read from a file or stdin, never from the command line (argv is visible to every user).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import sys
from pathlib import Path
from typing import Sequence

import bcrypt
import yaml

from .cli import OneLineParser
from .settings import SettingError
from .web import load_web_config

PROG = "mlscope web-config"


def read_password(source: str) -> bytes:
    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise SettingError(f"--password-file: cannot read {source}: {exc.strerror or exc}") from None
    password = raw[:-1] if raw.endswith(b"\n") else raw
    password = password[:-1] if password.endswith(b"\r") else password
    where = "stdin" if source == "-" else source
    if not password:
        raise SettingError(f"--password-file: the password from {where} is empty")
    if len(password) > 72:
        raise SettingError(f"--password-file: the password from {where} is {len(password)} bytes; "
                           "bcrypt takes at most 72")
    return password


def self_signed(directory: Path, hosts: list[str], days: int) -> tuple[Path, Path]:
    """An ECDSA P-256 certificate for `hosts` (DNS names or IPs) that is its own CA, and its key (mode 0600)."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise SettingError("--tls-dir needs the 'cryptography' package: pip install 'mlscope[tls]'") from None
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(key, hashes.SHA256()))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / "mlscope.crt", directory / "mlscope.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    except OSError as exc:
        raise SettingError(f"--tls-dir: cannot write to {directory}: {exc.strerror or exc}") from None
    return cert_path.resolve(), key_path.resolve()


def main(argv: Sequence[str]) -> int:
    parser = OneLineParser(prog=PROG, allow_abbrev=False,
                           description="Write a web config (basic auth, optional TLS) for --web-config, "
                                       "in exporter-toolkit's format.")
    parser.add_argument("--user", default="prometheus", help="basic-auth user name (default: prometheus)")
    parser.add_argument("--password-file", default="-", metavar="FILE",
                        help="file holding the password (one line); '-' reads stdin (default)")
    parser.add_argument("--cost", type=int, default=10, choices=range(4, 32), metavar="4..31",
                        help="bcrypt cost (default: 10, as htpasswd -B and exporter-toolkit's examples)")
    parser.add_argument("--tls-dir", metavar="DIR",
                        help="also write a self-signed certificate and key there (mlscope.crt, mlscope.key)")
    parser.add_argument("--host", action="append", metavar="NAME",
                        help="DNS name or IP the certificate is for; repeat for more "
                             "(default: this host's name, localhost, 127.0.0.1)")
    parser.add_argument("--days", type=int, default=365, help="certificate validity (default: 365)")
    parser.add_argument("--output", metavar="FILE", help="write here (mode 0600) instead of stdout")
    args = parser.parse_args(list(argv))
    if not args.user or ":" in args.user:
        parser.error("--user: must be non-empty and contain no ':'")
    if args.days <= 0:
        parser.error("--days: must be a positive integer")

    hashed = bcrypt.hashpw(read_password(args.password_file), bcrypt.gensalt(rounds=args.cost)).decode()
    config: dict = {"basic_auth_users": {args.user: hashed}}
    if args.tls_dir:
        hosts = args.host or [socket.gethostname(), "localhost", "127.0.0.1"]
        cert, key = self_signed(Path(args.tls_dir), hosts, args.days)
        config["tls_server_config"] = {"cert_file": str(cert), "key_file": str(key)}
    text = "# Written by `mlscope web-config`; use it with --web-config.\n" + yaml.safe_dump(config, sort_keys=False)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
    except OSError as exc:
        raise SettingError(f"--output: cannot write {args.output}: {exc.strerror or exc}") from None
    load_web_config(args.output)  # what we wrote must be what the exporters accept
    print(f"wrote {args.output}" + (f" and a self-signed certificate in {args.tls_dir}" if args.tls_dir else ""),
          file=sys.stderr)
    return 0
