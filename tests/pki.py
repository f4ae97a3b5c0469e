"""A throw-away certificate authority made with openssl, for the TLS tests (DICOM and HTTPS)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _openssl(*args: str) -> None:
    made = subprocess.run(["openssl", *args], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr


def certificate_authority(folder: Path, name: str) -> None:
    """A self-signed CA certificate and key in ``folder`` (ca.crt, ca.key)."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        "-keyout",
        str(folder / "ca.key"),
        "-out",
        str(folder / "ca.crt"),
    )


def signed_certificate(folder: Path, name: str, extension: str) -> None:
    """A key and a certificate for ``name``, signed by the test CA in ``folder``."""
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        f"/CN={name}",
        "-keyout",
        str(folder / f"{name}.key"),
        "-out",
        str(folder / f"{name}.csr"),
    )
    (folder / f"{name}.ext").write_text(extension)
    _openssl(
        "x509",
        "-req",
        "-in",
        str(folder / f"{name}.csr"),
        "-days",
        "2",
        "-CA",
        str(folder / "ca.crt"),
        "-CAkey",
        str(folder / "ca.key"),
        "-CAcreateserial",
        "-extfile",
        str(folder / f"{name}.ext"),
        "-out",
        str(folder / f"{name}.crt"),
    )
