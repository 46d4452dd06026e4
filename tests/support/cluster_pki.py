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


def _new_ec_key(path: Path) -> None:
    curve = "ec_paramgen_curve:P-256"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", curve, "-out", str(path))
    path.chmod(0o600)


class Pki:
    """A private CA and the leaf certificates that it signs, kept in one directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = CertKey(self.dir / "ca.crt", self.dir / "ca.key")
        _new_ec_key(self.ca.key)
        _openssl(
            "req", "-x509", "-new", "-key", str(self.ca.key), "-days", DAYS,
            "-subj", "/CN=moodle-archive-operator-local-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "-out", str(self.ca.cert),
        )  # fmt: skip
        self._serial = 1

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
        pair = CertKey(self.dir / f"{name}.crt", self.dir / f"{name}.key")
        _new_ec_key(pair.key)
        subject = "".join(f"/O={org}" for org in organizations) + f"/CN={common_name}"
        csr = self.dir / f"{name}.csr"
        _openssl("req", "-new", "-key", str(pair.key), "-subj", subject, "-out", str(csr))
        alt_names = [f"DNS:{d}" for d in dns_names] + [f"IP:{ip}" for ip in ips]
        usage = "serverAuth" if alt_names else "clientAuth"
        ext_lines = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={usage}",
        ]
        if alt_names:
            ext_lines.append("subjectAltName=" + ",".join(alt_names))
        ext = self.dir / f"{name}.ext"
        ext.write_text("\n".join(ext_lines) + "\n")
        self._serial += 1
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.ca.cert), "-CAkey", str(self.ca.key),
            "-set_serial", str(self._serial), "-days", DAYS, "-extfile", str(ext),
            "-out", str(pair.cert),
        )  # fmt: skip
        csr.unlink()
        ext.unlink()
        return pair

    def service_account_keys(self) -> CertKey:
        """The key pair the API server signs ServiceAccount tokens with (cert = public key)."""
        pair = CertKey(self.dir / "sa.pub", self.dir / "sa.key")
        _new_ec_key(pair.key)
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
