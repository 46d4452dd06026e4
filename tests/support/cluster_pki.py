"""Certificates, keys and kubeconfigs of one local control plane, made with the openssl CLI."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Names the API server's serving certificate answers to (loopback and in-cluster names).
APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
DAYS = "3650"


class PkiError(RuntimeError):
    """openssl is missing or failed."""


@dataclass(frozen=True)
class CertKey:
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    if shutil.which("openssl") is None:
        raise PkiError("openssl not found on PATH: install Debian's openssl package")
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PkiError(f"openssl {' '.join(args[:2])} failed: {done.stderr.strip()}")


# A minimal openssl config, so that no default extensions (CA:TRUE) end up in leaf certificates.
OPENSSL_CONFIG = "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n"
NEW_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")


class Pki:
    """A private CA and the leaf certificates that it signs, kept in one directory
    (one openssl call per certificate: each makes its key and signs it)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "openssl.cnf"
        self.config.write_text(OPENSSL_CONFIG)
        self.ca = CertKey(self.dir / "ca.crt", self.dir / "ca.key")
        self._new_cert(
            self.ca,
            "/CN=moodle-archive-operator-local-ca",
            ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"],
            signed_by_ca=False,
        )

    def _new_cert(
        self, pair: CertKey, subject: str, extensions: list[str], *, signed_by_ca: bool = True
    ) -> CertKey:
        args = ["req", "-x509", "-new", "-config", str(self.config), *NEW_EC_KEY]
        args += ["-keyout", str(pair.key), "-subj", subject, "-days", DAYS, "-out", str(pair.cert)]
        if signed_by_ca:
            args += ["-CA", str(self.ca.cert), "-CAkey", str(self.ca.key)]
        for ext in extensions:
            args += ["-addext", ext]
        _openssl(*args)
        pair.key.chmod(0o600)
        return pair

    def issue(
        self,
        name: str,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        dns_names: Sequence[str] = (),
        ips: Sequence[str] = (),
    ) -> CertKey:
        """A leaf certificate: a server one when names or IPs are given, else a client one."""
        subject = "".join(f"/O={org}" for org in organizations) + f"/CN={common_name}"
        alt_names = [f"DNS:{d}" for d in dns_names] + [f"IP:{ip}" for ip in ips]
        extensions = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={'serverAuth' if alt_names else 'clientAuth'}",
        ]
        if alt_names:
            extensions.append("subjectAltName=" + ",".join(alt_names))
        pair = CertKey(self.dir / f"{name}.crt", self.dir / f"{name}.key")
        return self._new_cert(pair, subject, extensions)

    def service_account_keys(self) -> CertKey:
        """The key pair the API server signs ServiceAccount tokens with (cert = public key)."""
        pair = CertKey(self.dir / "sa.pub", self.dir / "sa.key")
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", str(pair.key))  # fmt: skip
        pair.key.chmod(0o600)
        _openssl("pkey", "-in", str(pair.key), "-pubout", "-out", str(pair.cert))
        return pair


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, server: str, ca_cert: Path, client: CertKey, user: str) -> Path:
    """A self-contained kubeconfig (JSON is valid YAML) with the certificates embedded."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client.cert),
                    "client-key-data": _b64(client.key),
                },
            }
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
    return path
