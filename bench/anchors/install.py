"""Installing the anchors on demand, pinned, into the cache folder.

Nothing comes from anywhere but the package registries, through their own clients:

- npm groups (bench/anchors/node, bench/anchors/colyseus): the package.json and
  package-lock.json kept here are copied into <cache>/<group> and installed with
  `npm ci --ignore-scripts` (Colyseus also with --legacy-peer-deps: its uWebSockets
  transport peer points outside the registry). The lock holds every version and its
  integrity hash, so every install is the same. The group's scripts are copied next to
  its node_modules (into <cache>/<group>/scripts) so that they resolve the packages;
  ES modules ignore NODE_PATH.
- pip groups: requirements*.txt in bench/anchors/python, every dependency pinned, into
  the venv <cache>/venv, made with the harness's own interpreter.

An install happens once; a stamp holding the lock file's hash tells whether the cache
still matches. Installs hold <cache>/install.lock, so two harnesses never install into
the same folder at once. A failure raises Unavailable with the end of the install log.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.system import Env, Unavailable

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = Path("~/.cache/tickwire-bench").expanduser()
INSTALL_TIMEOUT_S = 900
LOCK_WAIT_S = 900


def cache_dir() -> Path:
    """TICKWIRE_BENCH_CACHE, or ~/.cache/tickwire-bench."""
    return Path(os.environ.get("TICKWIRE_BENCH_CACHE") or DEFAULT_CACHE).expanduser().resolve()


@contextlib.contextmanager
def file_lock(path: Path, wait_s: float = LOCK_WAIT_S, what: str = "lock", log=None) -> Iterator[None]:
    """Hold an flock on `path`, waiting at most wait_s for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Unavailable(f"{what} {path} still held after {wait_s:.0f}s") from None
                if log and not told:
                    log(f"waiting for {what} {path} (another bench run holds it)")
                    told = True
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _hash(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
        h.update(b"\0")
    return h.hexdigest()


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def _run_logged(argv: Sequence[str], log_path: Path, what: str, cwd: Path | None = None) -> None:
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        try:
            subprocess.run(
                list(argv),
                cwd=cwd,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                timeout=INSTALL_TIMEOUT_S,
                check=True,
            )
        except subprocess.TimeoutExpired:
            raise Unavailable(f"{what}: gave up after {INSTALL_TIMEOUT_S}s (log: {log_path})") from None
        except (subprocess.CalledProcessError, OSError) as exc:
            raise Unavailable(f"{what} failed ({exc}); log {log_path}:\n{_tail(log_path)}") from None


# ---------------------------------------------------------------------- npm


@dataclass(frozen=True)
class NodeGroup:
    name: str  # folder under bench/anchors and under the cache
    npm_flags: tuple[str, ...]
    packages: tuple[str, ...]  # the ones whose versions are reported
    shared: tuple[str, ...] = ()  # scripts of other groups it uses (paths under bench/anchors)


NODE = NodeGroup("node", ("--ignore-scripts",), ("socketcluster-server", "socketcluster-client", "ws"))
COLYSEUS = NodeGroup(
    "colyseus",
    ("--ignore-scripts", "--legacy-peer-deps"),
    ("colyseus", "@colyseus/core", "@colyseus/ws-transport", "@colyseus/schema", "@colyseus/sdk"),
    shared=("node/wslib.js",),
)


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise Unavailable("'node' is not installed (Node.js 20 or later; make system-deps installs it)")
    return node


def ensure_node_group(env: Env, group: NodeGroup) -> Path:
    """Install the group if needed; return the folder its scripts run from."""
    node_binary()
    npm = shutil.which("npm")
    if npm is None:
        raise Unavailable("'npm' is not installed (it comes with Node.js)")
    src = HERE / group.name
    dest = env.cache / group.name
    lock_bytes = (src / "package-lock.json").read_bytes()
    want = _hash(lock_bytes, " ".join(group.npm_flags).encode())
    stamp = dest / ".installed"
    if not (stamp.exists() and stamp.read_text() == want and (dest / "node_modules").is_dir()):
        with file_lock(env.cache / "install.lock", what="install lock", log=env.log):
            if not (stamp.exists() and stamp.read_text() == want and (dest / "node_modules").is_dir()):
                lock = f"bench/anchors/{group.name}/package-lock.json"
                env.log(f"installing the {group.name} anchors into {dest} (npm ci, pinned by {lock})")
                dest.mkdir(parents=True, exist_ok=True)
                stamp.unlink(missing_ok=True)
                for name in ("package.json", "package-lock.json"):
                    shutil.copyfile(src / name, dest / name)
                argv = [
                    npm,
                    "ci",
                    "--prefix",
                    str(dest),
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    *group.npm_flags,
                ]
                _run_logged(argv, dest / "install.log", f"npm ci of the {group.name} anchors")
                stamp.write_text(want)
    files = [f for f in sorted(src.iterdir()) if f.suffix in (".js", ".mjs", ".cjs") and f.is_file()]
    return sync_scripts(files + [HERE / s for s in group.shared], dest / "scripts")


def sync_scripts(files: Sequence[Path], dest: Path) -> Path:
    """Copy scripts next to a group's node_modules (only those that changed)."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        target = dest / f.name
        data = f.read_bytes()
        if not target.exists() or target.read_bytes() != data:
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
    return dest


def node_versions(env: Env, group: NodeGroup) -> dict[str, str]:
    out = {}
    for name in group.packages:
        try:
            pkg = json.loads((env.cache / group.name / "node_modules" / name / "package.json").read_text())
            out[name] = pkg["version"]
        except (OSError, ValueError, KeyError):
            out[name] = "?"
    return out


# ---------------------------------------------------------------------- pip

PY_ANCHORS = "requirements.txt"
PY_CHART = "requirements-chart.txt"


def venv_python(env: Env) -> Path:
    return env.cache / "venv" / "bin" / "python"


def ensure_venv(env: Env, requirements: str = PY_ANCHORS) -> Path:
    """Install one pinned requirements file into <cache>/venv; return its python."""
    req = HERE / "python" / requirements
    venv = env.cache / "venv"
    py = venv_python(env)
    want = _hash(req.read_bytes(), sys.version.encode())
    stamp = venv / f".installed-{req.stem}"
    if stamp.exists() and stamp.read_text() == want and py.exists():
        return py
    with file_lock(env.cache / "install.lock", what="install lock", log=env.log):
        if stamp.exists() and stamp.read_text() == want and py.exists():
            return py
        log = env.cache / "venv-install.log"
        env.cache.mkdir(parents=True, exist_ok=True)
        if not py.exists():
            env.log(f"creating the venv {venv}")
            _run_logged([env.python, "-m", "venv", str(venv)], log, "creating the bench venv")
        env.log(f"installing {req.relative_to(env.repo)} into {venv} (pip, pinned)")
        stamp.unlink(missing_ok=True)
        _run_logged(
            [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", str(req)],
            log,
            f"pip install -r {req.name}",
        )
        # Precompiled site-packages: servers then start as they do in a normal install
        # (without it, every import compiles, and the idle-memory baseline moves).
        subprocess.run(
            [str(py), "-m", "compileall", "-q", "-j", "0", str(venv / "lib")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=INSTALL_TIMEOUT_S,
        )
        stamp.write_text(want)
    return py


def pip_versions(env: Env, names: Sequence[str]) -> dict[str, str]:
    code = "import importlib.metadata as m, json, sys\nprint(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    try:
        out = subprocess.run(
            [str(venv_python(env)), "-c", code, *names], capture_output=True, text=True, timeout=60, check=True
        )
        return json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return {n: "?" for n in names}


def setup_all(env: Env) -> dict[str, dict[str, str]]:
    """Install every group now (`python -m bench --setup`)."""
    out: dict[str, dict[str, str]] = {}
    for group in (NODE, COLYSEUS):
        try:
            ensure_node_group(env, group)
            out[group.name] = node_versions(env, group)
        except Unavailable as exc:
            out[group.name] = {"error": str(exc)}
    for req, names in (
        (PY_ANCHORS, ["websockets", "picows", "python-socketio", "aiohttp", "uvloop"]),
        (PY_CHART, ["matplotlib"]),
    ):
        try:
            ensure_venv(env, req)
            out[req] = pip_versions(env, names)
        except Unavailable as exc:
            out[req] = {"error": str(exc)}
    return out
