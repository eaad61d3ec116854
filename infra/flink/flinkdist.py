"""Helpers of install.sh (standard library only).

  unpack DEST ARCHIVE...   the Flink distribution (bin, conf, lib, opt, plugins, log) out of the
                           apache-flink / apache-flink-libraries wheels or sdists into DEST
  launcher JAR MAIN CLASSPATH
                           a jar holding only a manifest (Main-Class, Class-Path), so that
                           `java -jar JAR` runs MAIN on the class path resolved by Maven
"""

import posixpath
import re
import sys
import tarfile
import zipfile
from pathlib import Path

# pyflink/<part>/... in wheels, apache-flink[-libraries]-<v>/deps/<part>/... in sdists
_MEMBER = re.compile(r"^(?:pyflink|[^/]+/deps)/(bin|conf|lib|opt|plugins|log)/(.+)$")


def _safe(name: str) -> bool:
    return not name.startswith("/") and ".." not in posixpath.normpath(name).split("/")


def _members(archive: Path):
    """(relative destination, bytes reader, executable) of the distribution's files."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                match = _MEMBER.match(info.filename)
                if match and not info.is_dir():
                    yield f"{match[1]}/{match[2]}", lambda i=info: z.read(i), (info.external_attr >> 16) & 0o111
        return
    with tarfile.open(archive) as t:
        for info in t:
            match = _MEMBER.match(info.name)
            if match and info.isfile():
                yield f"{match[1]}/{match[2]}", lambda i=info: t.extractfile(i).read(), info.mode & 0o111


def unpack(dest: str, archives: list[str]) -> None:
    root = Path(dest)
    for archive in archives:
        for relative, read, executable in _members(Path(archive)):
            if not _safe(relative):
                raise SystemExit(f"unsafe path {relative!r} in {archive}")
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(read())
            if executable or relative.startswith("bin/") and not relative.endswith((".jar", ".bat")):
                target.chmod(0o755)
    (root / "log").mkdir(exist_ok=True)


def _manifest_line(text: str) -> str:
    """A manifest header wrapped at 72 bytes (continuation lines start with a space)."""
    data, lines = text.encode(), []
    lines.append(data[:72])
    data = data[72:]
    while data:
        lines.append(b" " + data[:71])
        data = data[71:]
    return "\r\n".join(line.decode() for line in lines) + "\r\n"


def launcher(jar: str, main_class: str, classpath: str) -> None:
    entries = [Path(p).resolve().as_uri() for p in classpath.split(":") if p]
    manifest = ("Manifest-Version: 1.0\r\n" + _manifest_line(f"Main-Class: {main_class}")
                + _manifest_line("Class-Path: " + " ".join(entries)) + "\r\n")
    with zipfile.ZipFile(jar, "w") as z:
        z.writestr("META-INF/MANIFEST.MF", manifest)


if __name__ == "__main__":
    command, *rest = sys.argv[1:] or ["help"]
    if command == "unpack" and len(rest) >= 2:
        unpack(rest[0], rest[1:])
    elif command == "launcher" and len(rest) == 3:
        launcher(*rest)
    else:
        raise SystemExit(__doc__)
