"""The application image without a Docker engine: exactly the files the Dockerfile's COPY
lines bring in (minus .dockerignore's patterns), staged as the image's /app, and installed
the way the Dockerfile installs them into a fresh virtual environment.

The fresh environment gets no third-party package of its own: a `.pth` line puts this
venv's site-packages on its path (the Dockerfile's dependency layer, pinned by the same
constraints.txt). Lines of a `.pth` file reached that way are not themselves processed,
so the development checkout's editable install is invisible there: every module of the
project comes from the staged /app or the wheel built from it, nothing from the checkout.

    python -m tests.image_helpers [DIR]   stage and install, print what it took
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
WORKDIR = PurePosixPath("/app")


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    destination: str


def dockerfile_lines(text: str) -> list[str]:
    """The instructions, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending:
        lines.append(pending.strip())
    return lines


def copies(text: str) -> list[Copy]:
    """The build context's COPY (and ADD) instructions: sources and destination. A COPY
    from another stage (`--from=`) copies nothing from the context and is left out."""
    found: list[Copy] = []
    for line in dockerfile_lines(text):
        words = shlex.split(line)
        if words[0].upper() not in ("COPY", "ADD"):
            continue
        args = words[1:]
        if any(arg.startswith("--from") for arg in args):
            continue
        args = [arg for arg in args if not arg.startswith("--")]
        found.append(Copy(tuple(args[:-1]), args[-1]))
    return found


def env_of(text: str) -> dict[str, str]:
    """The ENV instructions' KEY=value pairs (the form this Dockerfile uses)."""
    values: dict[str, str] = {}
    for line in dockerfile_lines(text):
        words = shlex.split(line)
        if words[0].upper() == "ENV":
            for word in words[1:]:
                key, _, value = word.partition("=")
                values[key] = value
    return values


def workdir_of(text: str) -> PurePosixPath:
    found = [shlex.split(line)[1] for line in dockerfile_lines(text)
             if line.split()[0].upper() == "WORKDIR"]
    return PurePosixPath(found[-1]) if found else PurePosixPath("/")


def ignore_patterns(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def ignored(path: PurePosixPath, patterns: list[str]) -> bool:
    """Docker's .dockerignore for the patterns this project uses: `name` or `a/b` match
    from the context's root (a folder matched: everything in it), `**/x` at any depth.
    Exceptions (`!`) are not supported: a pattern with one is refused."""
    parts = path.parts
    for pattern in patterns:
        if pattern.startswith("!"):
            raise ValueError(f".dockerignore exception {pattern!r} is not supported here")
        if pattern.startswith("**/"):
            tail = pattern[3:]
            depth = len(PurePosixPath(tail).parts)
            for start in range(len(parts)):
                for end in range(start + depth, start + depth + 1):
                    if end <= len(parts) and fnmatch.fnmatchcase(
                            "/".join(parts[start:end]), tail):
                        return True
        else:
            depth = len(PurePosixPath(pattern).parts)
            if len(parts) >= depth and fnmatch.fnmatchcase("/".join(parts[:depth]), pattern):
                return True
    return False


def image_files(root: Path = ROOT) -> dict[PurePosixPath, Path]:
    """Every file the image's WORKDIR holds after the COPY lines: its path relative to the
    WORKDIR, and the file of the build context it comes from."""
    text = (root / "Dockerfile").read_text()
    workdir = workdir_of(text)
    patterns = ignore_patterns((root / ".dockerignore").read_text()) \
        if (root / ".dockerignore").is_file() else []
    files: dict[PurePosixPath, Path] = {}
    for copy in copies(text):
        destination = PurePosixPath(copy.destination)
        if not destination.is_absolute():
            destination = workdir / destination
        for source in copy.sources:
            source_path = root / source
            if not source_path.exists():
                raise FileNotFoundError(f"COPY {source}: not in the build context")
            if source_path.is_dir():
                for file in sorted(source_path.rglob("*")):
                    relative = PurePosixPath(file.relative_to(root).as_posix())
                    if file.is_file() and not ignored(relative, patterns):
                        inner = PurePosixPath(file.relative_to(source_path).as_posix())
                        files[(destination / inner).relative_to(workdir)] = file
            elif not ignored(PurePosixPath(source), patterns):
                target = destination / source_path.name \
                    if copy.destination.endswith("/") or len(copy.sources) > 1 \
                    else destination
                files[target.relative_to(workdir)] = source_path
    return files


def stage(app: Path, root: Path = ROOT) -> dict[PurePosixPath, Path]:
    """Copy exactly the image's files into `app` (the image's WORKDIR)."""
    files = image_files(root)
    for relative, source in files.items():
        target = app / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return files


@dataclass(frozen=True)
class ImageVenv:
    """A staged /app and the fresh environment it is installed in."""

    app: Path
    venv: Path
    timings: dict[str, float]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name

    def environment(self, **extra: str) -> dict[str, str]:
        """The image's environment (its ENV lines, WORKDIR as /app) with `extra`; nothing
        of this process's PETITION_* or DATABASE_URL leaks in."""
        inherited = {key: value for key, value in os.environ.items()
                     if not key.startswith(("PETITION_", "TEMPORAL_", "PYTHON", "VIRTUAL_ENV"))
                     and key not in ("DATABASE_URL",)}
        image_env = env_of(DOCKERFILE.read_text())
        env = {**inherited, **{key: value.replace(str(WORKDIR), str(self.app))
                               for key, value in image_env.items()}}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["HOME"] = str(self.app.parent / "home")
        return {**env, **extra}


def install(directory: Path, root: Path = ROOT) -> ImageVenv:
    """Stage the image's files in `directory/app` and install them into the fresh
    environment `directory/venv` as the Dockerfile's `pip install --no-deps .` does."""
    timings: dict[str, float] = {}
    app, venv = directory / "app", directory / "venv"
    mark = time.monotonic()
    stage(app, root)
    timings["stage"] = time.monotonic() - mark
    mark = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(sysconfig.get_paths()["purelib"])
    target = Path(subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip())
    (target / "_image_dependencies.pth").write_text(f"{purelib}\n")
    timings["venv"] = time.monotonic() - mark
    mark = time.monotonic()
    # As in the image: build the wheel in /app and install it. Without build isolation
    # (setuptools from the dependency path: no network), and not over the checkout's
    # editable install, which the fresh environment can see as metadata.
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--no-deps", "--ignore-installed",
         "--disable-pip-version-check", "--no-warn-script-location", "."],
        cwd=app, capture_output=True, text=True, check=False)
    timings["install"] = time.monotonic() - mark
    if result.returncode != 0:
        raise InstallError(result.stdout + result.stderr)
    for leftover in ("build", "petition_flow.egg-info"):
        shutil.rmtree(app / leftover, ignore_errors=True)
    return ImageVenv(app, venv, timings)


class InstallError(RuntimeError):
    """`pip install .` of the staged files failed (its output is the message)."""


if __name__ == "__main__":
    import tempfile

    where = Path(sys.argv[1]) if sys.argv[1:] else Path(tempfile.mkdtemp(prefix="image-"))
    image = install(where)
    print(f"staged {len(image_files())} files in {image.app}, installed in {image.venv}: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in image.timings.items()))
