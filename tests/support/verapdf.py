"""veraPDF (the reference PDF/A validator) for the tests: installed from Maven Central into
the cache (outside the repository), run through its command-line main class.

    python -m tests.support.verapdf install     # what `make verapdf` runs (idempotent)
    python -m tests.support.verapdf validate FILE...

Needs Java (17) and Maven (`make setup` installs Debian's). The library's jars and the
Maven plugins that fetch them go to $MOODLE_ARCHIVER_CACHE_DIR/verapdf/<version>.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

VERSION = "1.28.2"
MAIN_CLASS = "org.verapdf.apps.GreenfieldCliWrapper"
CACHE = Path(
    os.environ.get("MOODLE_ARCHIVER_CACHE_DIR", Path.home() / ".cache/moodle-archive-operator")
)
HOME = CACHE / "verapdf" / VERSION
POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.moodle-archive-operator</groupId>
  <artifactId>verapdf-for-tests</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.verapdf.apps</groupId>
      <artifactId>greenfield-apps</artifactId>
      <version>{VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""


class VeraPdfMissing(RuntimeError):
    """veraPDF is not installed (make verapdf) or Java is missing."""


@dataclass(frozen=True)
class Failure:
    """One PDF/A rule a file breaks."""

    clause: str
    test: int
    description: str
    checks: int

    def __str__(self) -> str:
        return f"{self.clause}-{self.test} ({self.checks}x): {self.description}"


def installed() -> bool:
    return (HOME / ".installed").is_file() and shutil.which("java") is not None


def install() -> None:
    """Fetch veraPDF's jars from Maven Central into the cache (nothing when already there)."""
    if (HOME / ".installed").is_file():
        return
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise VeraPdfMissing("veraPDF needs Java and Maven (make setup installs them)")
    HOME.mkdir(parents=True, exist_ok=True)
    (HOME / "pom.xml").write_text(POM, "utf-8")
    lib = HOME / "lib"
    shutil.rmtree(lib, ignore_errors=True)
    subprocess.run(
        ["mvn", "-B", "-q", "-Dstyle.color=never", "-f", str(HOME / "pom.xml"),
         f"-Dmaven.repo.local={HOME / 'm2'}", "dependency:copy-dependencies",
         f"-DoutputDirectory={lib}", "-DincludeScope=runtime"],
        check=True,
    )  # fmt: skip
    if not list(lib.glob(f"greenfield-apps-{VERSION}.jar")):
        raise VeraPdfMissing(f"Maven did not fetch greenfield-apps {VERSION} into {lib}")
    shutil.rmtree(HOME / "m2", ignore_errors=True)  # the jars are in lib; the rest is Maven's
    (HOME / ".installed").write_text(VERSION + "\n", "utf-8")


def validate(paths: list[Path], flavour: str = "3b") -> dict[Path, list[Failure]]:
    """The PDF/A rules each file breaks (an empty list: compliant), in one JVM."""
    if not installed():
        raise VeraPdfMissing(f"veraPDF {VERSION} is not installed: run make verapdf")
    done = subprocess.run(
        ["java", "-Xss4m", "-cp", str(HOME / "lib" / "*"), MAIN_CLASS, "-f", flavour,
         "--format", "mrr", "--maxfailuresdisplayed", "1", *(str(p) for p in paths)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if not done.stdout.lstrip().startswith("<?xml"):
        raise RuntimeError(f"veraPDF failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return _failures(done.stdout, paths)


def _failures(report: str, paths: list[Path]) -> dict[Path, list[Failure]]:
    by_name = {str(p): p for p in paths}
    results: dict[Path, list[Failure]] = {}
    for job in ET.fromstring(report).iter("job"):  # noqa: S314 (veraPDF's own report)
        name = job.findtext("item/name", "")
        verdict = job.find("validationReport")
        if verdict is None:
            raise RuntimeError(f"veraPDF could not validate {name}: {ET.tostring(job)[:500]!r}")
        results[by_name.get(name, Path(name))] = [
            Failure(
                rule.get("clause", "?"),
                int(rule.get("testNumber", "0")),
                " ".join((rule.findtext("description") or "").split()),
                int(rule.get("failedChecks", "0")),
            )
            for rule in verdict.iter("rule")
            if rule.get("status") == "failed"
        ]
    missing = [p for p in paths if p not in results]
    if missing:
        raise RuntimeError(f"veraPDF reported nothing on {missing}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install")
    check = commands.add_parser("validate")
    check.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    if args.command == "install":
        install()
        print(f"veraPDF {VERSION} in {HOME}")
        return 0
    failed = 0
    for path, failures in validate(args.files).items():
        print(f"{'PASS' if not failures else 'FAIL'} {path}")
        for failure in failures:
            print(f"  {failure}")
        failed += bool(failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
