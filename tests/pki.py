"""Test certificates: a CA, and a certificate it signed for 127.0.0.1, made with openssl."""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, and a certificate signed by it for 127.0.0.1 (usable by a server or a client)."""
    files = {
        name: directory / f"{name}.pem" for name in ("ca", "ca-key", "cert", "key", "other-key")
    }
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", files["ca-key"], "-out", files["ca"], "-subj", "/CN=expsig test CA",
    )  # fmt: skip
    csr = directory / "cert.csr"
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", files["key"], "-out", csr,
        "-subj", "/CN=127.0.0.1",
    )  # fmt: skip
    extensions = directory / "san.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509", "-req", "-in", csr, "-CA", files["ca"], "-CAkey", files["ca-key"],
        "-CAcreateserial", "-days", "2", "-out", files["cert"], "-extfile", extensions,
    )  # fmt: skip
    openssl("genrsa", "-out", files["other-key"], "2048")
    return files
