"""Build the project's container images on this machine, without a Docker engine or a registry.

    python -m tests.support.imagebuild build     # base, pause, operator, job (cached)
    python -m tests.support.imagebuild refs      # print the image references as JSON

1. base: a Debian bookworm root filesystem made by `debootstrap --variant=minbase` from the
   Debian mirror apt already uses, trimmed like debian:bookworm-slim, committed with buildah as
   `localhost/moodle-archiver-base:bookworm-<hash>`.
2. pause: a static binary compiled from images/pause/pause.c, the node's sandbox image.
3. operator and job: `buildah bud` of operator/Dockerfile and job-image/Dockerfile with
   `BASE_IMAGE` set to the local base; `--layers` keeps the apt and pip layers cached, so a
   change of the code rebuilds only the last layers.
4. each image (the base too: the real node's volume provisioner uses it for its helper pods)
   is written as a docker-archive tarball that `ctr images import` takes.

Everything lives under $MOODLE_ARCHIVER_CACHE_DIR/images (buildah's storage included); image
tags are hashes of their inputs, so an unchanged tree reuses what was built.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.support.cluster_env import REPO_ROOT, cache_root

BASE_NAME = "localhost/moodle-archiver-base"
PAUSE_NAME = "localhost/moodle-archiver-pause"
OPERATOR_NAME = "localhost/moodle-archive-operator"
JOB_NAME = "localhost/moodle-archive-job"
SUITE = "bookworm"
# Bump to rebuild the base when the recipe below changes.
BASE_RECIPE = "1"
PAUSE_SOURCE = REPO_ROOT / "images" / "pause" / "pause.c"
# Context files each image depends on (the .dockerignore allow-list).
CONTEXT_PATHS = (
    "pyproject.toml",
    "README.md",
    "job-image/moodle_archive_job",
    "operator/moodle_archive_operator",
)
DPKG_EXCLUDES = """\
# Like debian:bookworm-slim: no documentation, manual pages or translations in images.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
"""
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_CA_PATH = "/etc/moodle-archiver-build-ca.crt"


class ImageBuildError(RuntimeError):
    """An image could not be built; the message names the step and its log."""


@dataclass(frozen=True)
class Images:
    base: str
    pause: str
    operator: str
    job: str
    archives: dict[str, str]

    @staticmethod
    def repo_and_tag(ref: str) -> tuple[str, str]:
        repo, _, tag = ref.rpartition(":")
        return repo, tag


def images_dir() -> Path:
    return cache_root() / "images"


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:12]


def _tree_bytes(paths: Iterable[Path]) -> Iterable[bytes]:
    for path in paths:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            if "__pycache__" in file.parts or file.suffix == ".pyc":
                continue
            yield str(file.relative_to(REPO_ROOT)).encode()
            yield file.read_bytes()


def debian_mirror() -> str:
    """The Debian mirror of this machine's apt sources (deb822 or one-line format)."""
    configured = os.environ.get("MOODLE_ARCHIVER_DEBIAN_MIRROR")
    if configured:
        return configured
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in candidates:
        try:
            text = source.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if line.startswith("URIs:") and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and "security" not in line:
                return next(w for w in words[1:] if "://" in w)
    return "http://deb.debian.org/debian"


class Builder:
    def __init__(self, root: Path | None = None, log: Callable[[str], None] = print) -> None:
        self.root = root or images_dir()
        self.log = log
        self.storage = self.root / "storage"
        self.logs = self.root / "logs"
        self.archives = self.root / "archives"
        for directory in (self.storage, self.logs, self.archives):
            directory.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ tools

    def _require(self, *names: str) -> None:
        missing = [n for n in names if shutil.which(n) is None]
        if missing:
            raise ImageBuildError(
                f"{', '.join(missing)} not found: `make node-deps` installs Debian's "
                "debootstrap, buildah, containerd, runc and containernetworking-plugins"
            )

    def _run(self, step: str, argv: list[str], *, capture: bool = False, **kw: object) -> str:
        log_file = self.logs / f"{step}.log"
        with log_file.open("ab") as out:
            out.write(f"\n$ {' '.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.run(
                argv,
                stdout=subprocess.PIPE if capture else out,
                stderr=out,
                check=False,
                **kw,  # type: ignore[arg-type]
            )
        if proc.returncode != 0:
            tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-25:])
            raise ImageBuildError(
                f"{step}: `{' '.join(argv[:3])} ...` exited with {proc.returncode}; "
                f"log {log_file}:\n{tail}"
            )
        return proc.stdout.decode() if capture else ""

    def buildah(self, step: str, *args: str, capture: bool = False) -> str:
        argv = [
            "buildah",
            "--root",
            str(self.storage / "root"),
            "--runroot",
            str(self.storage / "run"),
            "--storage-driver",
            "overlay",
            *args,
        ]
        return self._run(step, argv, capture=capture)

    def image_exists(self, ref: str) -> bool:
        try:
            self.buildah(
                "inspect",
                "inspect",
                "--type",
                "image",
                "--format",
                "{{.FromImageID}}",
                ref,
                capture=True,
            )
        except ImageBuildError:
            return False
        return True

    # ------------------------------------------------------------------ images

    def base(self) -> str:
        mirror = debian_mirror()
        recipe = [BASE_RECIPE.encode(), mirror.encode(), DPKG_EXCLUDES.encode()]
        ref = f"{BASE_NAME}:{SUITE}-{_digest(recipe)}"
        if self.image_exists(ref):
            return ref
        self._require("debootstrap", "buildah")
        began = time.monotonic()
        self.log(f"images: debootstrap {SUITE} (minbase) from {mirror}")
        with tempfile.TemporaryDirectory(dir=self.root, prefix="rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            self._run("base", ["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror])
            self._trim_rootfs(rootfs, mirror)
            tarball = Path(tmp) / "rootfs.tar"
            self._run(
                "base",
                [
                    "tar",
                    "-C",
                    str(rootfs),
                    "--numeric-owner",
                    "--exclude=./dev/*",
                    "--exclude=./proc/*",
                    "--exclude=./sys/*",
                    "-cf",
                    str(tarball),
                    ".",
                ],
            )
            self._commit_scratch(
                "base",
                ref,
                [("add", str(tarball), "/")],
                [
                    "--env",
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "--cmd",
                    "/bin/bash",
                ],
            )
        self.log(f"images: {ref} in {time.monotonic() - began:.0f} s")
        return ref

    @staticmethod
    def _trim_rootfs(rootfs: Path, mirror: str) -> None:
        (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        security = mirror.rstrip("/").removesuffix("/debian") + "/debian-security"
        (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
            f"Types: deb\nURIs: {mirror}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
            f"Types: deb\nURIs: {security}\nSuites: {SUITE}-security\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
        (rootfs / "etc/dpkg/dpkg.cfg.d/excludes").write_text(DPKG_EXCLUDES)
        (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(
            'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
            '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
            'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";\n'
        )
        for pattern in (
            "var/cache/apt/archives/*.deb",
            "var/lib/apt/lists/*",
            "var/log/*.log",
            "usr/share/doc/*",
            "usr/share/man/*",
            "usr/share/locale/*",
            "usr/share/info/*",
        ):
            for path in rootfs.glob(pattern):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.name != "copyright":
                    path.unlink()
        (rootfs / "etc/hostname").write_text("localhost\n")

    def _commit_scratch(
        self, step: str, ref: str, copies: list[tuple[str, str, str]], config: list[str]
    ) -> None:
        container = self.buildah(step, "from", "--quiet", "scratch", capture=True).strip()
        try:
            for verb, source, dest in copies:
                self.buildah(step, verb, container, source, dest)
            self.buildah(step, "config", *config, container)
            self.buildah(step, "commit", "--quiet", "--rm", container, ref)
        except ImageBuildError:
            self.buildah(f"{step}-cleanup", "rm", container)
            raise

    def pause(self) -> str:
        source = PAUSE_SOURCE.read_bytes()
        ref = f"{PAUSE_NAME}:{_digest([source])}"
        if self.image_exists(ref):
            return ref
        self._require("gcc", "buildah")
        out = self.root / "pause"
        out.mkdir(exist_ok=True)
        binary = out / "pause"
        self._run("pause", ["gcc", "-Os", "-static", "-s", "-o", str(binary), str(PAUSE_SOURCE)])
        self._commit_scratch(
            "pause",
            ref,
            [("copy", str(binary), "/pause")],
            ["--entrypoint", '["/pause"]', "--user", "65535:65535"],
        )
        self.log(f"images: {ref}")
        return ref

    def dockerfile_image(self, name: str, dockerfile: Path, base: str) -> str:
        inputs = [
            dockerfile.read_bytes(),
            base.encode(),
            (REPO_ROOT / ".dockerignore").read_bytes(),
        ]
        inputs += list(_tree_bytes(REPO_ROOT / p for p in CONTEXT_PATHS))
        ref = f"{name}:dev-{_digest(inputs)}"
        if self.image_exists(ref):
            return ref
        self._require("buildah")
        began = time.monotonic()
        step = name.rsplit("/", 1)[-1]
        self.log(
            f"images: buildah bud {dockerfile.relative_to(REPO_ROOT)} -> {ref} "
            f"(log {self.logs / (step + '.log')})"
        )
        args = [
            "bud",
            "--layers",
            "--pull=never",
            "--isolation",
            "chroot",
            "--build-arg",
            f"BASE_IMAGE={base}",
            "-f",
            str(dockerfile),
            "-t",
            ref,
        ]
        if HOST_CA_BUNDLE.is_file():
            # pip checks PyPI against this machine's CA bundle (it may know a local proxy's CA).
            args += [
                "-v",
                f"{HOST_CA_BUNDLE}:{BUILD_CA_PATH}:ro",
                "--build-arg",
                f"PIP_CERT={BUILD_CA_PATH}",
            ]
        self.buildah(step, *args, str(REPO_ROOT))
        self.log(f"images: {ref} in {time.monotonic() - began:.0f} s")
        return ref

    def archive(self, ref: str) -> Path:
        """A docker-archive tarball of the image (what `ctr images import` reads)."""
        repo, tag = Images.repo_and_tag(ref)
        path = self.archives / f"{repo.rsplit('/', 1)[-1]}-{tag}.tar"
        if path.is_file():
            return path
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        self.buildah("archive", "push", "--quiet", ref, f"docker-archive:{tmp}:{ref}")
        tmp.rename(path)
        for old in self.archives.glob(f"{repo.rsplit('/', 1)[-1]}-*.tar"):
            if old != path:
                old.unlink()
        return path

    def prune(self, keep: Iterable[str]) -> None:
        """Remove older tags of our images (their cached layers stay for the next build)."""
        keep = set(keep)
        listing = self.buildah("prune", "images", "--json", capture=True)
        for image in json.loads(listing or "[]"):
            for name in image.get("names") or []:
                if name.startswith((OPERATOR_NAME, JOB_NAME, PAUSE_NAME)) and name not in keep:
                    self.buildah("prune", "rmi", name)

    def build_all(self) -> Images:
        began = time.monotonic()
        base = self.base()
        pause = self.pause()
        operator = self.dockerfile_image(OPERATOR_NAME, REPO_ROOT / "operator/Dockerfile", base)
        job = self.dockerfile_image(JOB_NAME, REPO_ROOT / "job-image/Dockerfile", base)
        refs = (pause, operator, job)
        # The base image too: the node's local-path-provisioner runs its helper pods from it.
        archives = {ref: str(self.archive(ref)) for ref in (base, *refs)}
        self.prune(refs)
        images = Images(base=base, pause=pause, operator=operator, job=job, archives=archives)
        (self.root / "images.json").write_text(json.dumps(asdict(images), indent=2) + "\n")
        self.log(f"images: ready in {time.monotonic() - began:.0f} s: {', '.join(refs)}")
        return images


def ensure_images(log: Callable[[str], None] = print) -> Images:
    """Build what is missing or out of date; return the references and their archives."""
    return Builder(log=log).build_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.imagebuild")
    parser.add_argument("command", choices=["build", "refs"])
    args = parser.parse_args(argv)
    try:
        images = ensure_images(log=lambda m: print(m, file=sys.stderr))
    except ImageBuildError as err:
        print(f"images: ERROR: {err}", file=sys.stderr)
        return 1
    if args.command == "refs":
        print(json.dumps(asdict(images), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
