"""Throwaway certificates made with the openssl command: a CA, and server or client certificates it signs."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_ca(folder: Path, name: str = "ca") -> CertPair:
    pair = CertPair(folder / f"{name}.pem", folder / f"{name}.key")
    _openssl("req", "-x509", *_EC_KEY, "-subj", f"/CN={name}", "-days", "2",
             "-keyout", str(pair.key), "-out", str(pair.cert))  # fmt: skip
    return pair


def make_cert(folder: Path, name: str, ca: CertPair | None = None, cn: str = "localhost") -> CertPair:
    """A certificate for 127.0.0.1 and localhost, self-signed or signed by `ca`."""
    pair = CertPair(folder / f"{name}.pem", folder / f"{name}.key")
    san = "subjectAltName=IP:127.0.0.1,DNS:localhost"
    if ca is None:
        _openssl("req", "-x509", *_EC_KEY, "-subj", f"/CN={cn}", "-days", "2", "-addext", san,
                 "-keyout", str(pair.key), "-out", str(pair.cert))  # fmt: skip
        return pair
    csr = folder / f"{name}.csr"
    ext = folder / f"{name}.ext"
    ext.write_text(san + "\n")
    _openssl("req", *_EC_KEY, "-subj", f"/CN={cn}", "-keyout", str(pair.key), "-out", str(csr))
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
             "-days", "2", "-extfile", str(ext), "-out", str(pair.cert))  # fmt: skip
    return pair
