"""The Python packages CloudFree needs beside QGIS: what is installed, what is missing, how to install it.

QGIS brings its own Python with numpy and GDAL; CloudFree also needs torch, safetensors, scikit-image,
OpenCV, ONNX Runtime, ONNX and ukis-csmask (scikit-learn, dask and distributed are optional). This
module knows, without importing QGIS or any of those packages:

- **which packages**, with the versions pinned in ``requirements.txt`` (it ships in the plugin folder);
- **which are installed**: importable in this Python, or already in CloudFree's own folder;
- **CloudFree's own folder**: the missing packages go to ``<QGIS user folder>/cloudfree-python/py3.11-<key>``,
  one per Python version and QGIS install (the key hashes ``sys.prefix``), never into QGIS's Python. The
  plugin appends it to the *end* of ``sys.path`` when it starts, so whatever QGIS ships always wins;
- **QGIS's Python executable**, which ``sys.executable`` is not inside QGIS on Windows (``qgis-bin.exe``)
  and macOS (the ``QGIS`` binary);
- **the pip command**: ``python -m pip install --target <folder> --only-binary=:all: -c <constraints>
  [torch's CPU or CUDA index] <packages>``. The constraints pin numpy and every package of QGIS's Python
  that holds compiled code to the version present, so pip resolves against what will actually run.

Run it as a command, with QGIS's Python (nothing is installed without ``--install``)::

    python3 -m cloudfree.dependencies              # installed / missing, the folder, the pip command
    python3 path/to/cloudfree/dependencies.py --install [--optional] [--torch cpu|cuda] [--target DIR]

Only the standard library is imported, so the plugin can call :func:`add_target_to_path` before
anything imports torch.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REQUIREMENTS_FILE = Path(__file__).resolve().parent / "requirements.txt"
FOLDER_NAME = "cloudfree-python"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: torch 2.13.0's Linux wheels on PyPI are its CUDA 13.0 build; on Windows that build comes from PyTorch's index
TORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu130"
#: the pinned torch (2.13.0) publishes wheels for Python 3.10 and newer only
MIN_PYTHON = (3, 10)
#: present on Linux when the NVIDIA driver is loaded (nvidia-smi may be missing from PATH)
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")
#: run by QGIS's Python after an install: imports each module with the folder appended, as the plugin will
VERIFY = ("import importlib, sys; sys.path.append(sys.argv[1]); "
          "[print('imported', m, getattr(importlib.import_module(m), '__version__', '')) for m in sys.argv[2:]]")
EXTENSION_SUFFIXES = tuple(set(importlib.machinery.EXTENSION_SUFFIXES) | {".so", ".pyd"})


class InstallerError(RuntimeError):
    """Something the installer cannot do, said in words (no pip, QGIS's Python not found)."""


@dataclass(frozen=True)
class Package:
    name: str                 # distribution name, as pip knows it
    module: str               # import name
    purpose: str
    optional: bool = False
    from_qgis: bool = False   # comes with QGIS: shown, never installed


PACKAGES = (
    Package("numpy", "numpy", "arrays (comes with QGIS)", from_qgis=True),
    Package("torch", "torch", "the networks (training, inference)"),
    Package("safetensors", "safetensors", "model files"),
    Package("scikit-image", "skimage", "metrics, registration, filters"),
    Package("opencv-python-headless", "cv2", "registration (SIFT), image filters"),
    Package("onnxruntime", "onnxruntime", "cloud detection, fast inference"),
    Package("onnx", "onnx", "ONNX export of the networks"),
    Package("ukis-csmask", "ukis_csmask", "pretrained cloud detector"),
    Package("scikit-learn", "sklearn", "random-forest baseline", optional=True),
    Package("dask", "dask", "scaling out on a cluster", optional=True),
    Package("distributed", "distributed", "scaling out on a cluster", optional=True),
)


#: The release ranges (major.minor, inclusive) CloudFree's tests pass on: the pins of requirements.txt
#: (Debian 12's QGIS 3.22 with pip's wheels) and Debian 13's own packages (QGIS 3.40: torch 2.6, numpy 2.2,
#: ONNX Runtime 1.21, onnx 1.17; scripts/debian_chroot.sh). A version inside its range is "OK".
TESTED = {
    "numpy": ("1.24", "2.2"),
    "torch": ("2.6", "2.14"),
    "safetensors": ("0.4", "0.5"),
    "scikit-image": ("0.24", "0.25"),
    "opencv-python-headless": ("4.10", "4.10"),
    "onnxruntime": ("1.21", "1.32"),
    "onnx": ("1.17", "1.23"),
}


def _minor(version: str) -> tuple:
    parts = []
    for piece in version.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts + [0] * (2 - len(parts)))


def tested_range(name: str, required: str = "") -> str:
    """``"2.6-2.14"`` (the tested range), or the pinned version of ``required`` when no range is stated."""
    if name in TESTED:
        low, high = TESTED[name]
        return low if low == high else f"{low}-{high}"
    return required.partition("==")[2]


def within_tested(name: str, version: str, required: str = "") -> bool:
    """Whether ``version`` lies in the tested range (or equals the pin, where no range is stated)."""
    if name in TESTED:
        low, high = TESTED[name]
        return _minor(low) <= _minor(version) <= _minor(high)
    pinned = required.partition("==")[2]
    return not pinned or version.split("+")[0] == pinned


@dataclass(frozen=True)
class Host:
    """The Python being asked about: ``platform.system()``, ``sys.executable``, ``sys.prefix``, version."""

    system: str
    executable: str
    prefix: str
    version: tuple

    @classmethod
    def current(cls) -> "Host":
        return cls(platform.system(), sys.executable, sys.prefix, tuple(sys.version_info[:2]))


@dataclass(frozen=True)
class Status:
    package: Package
    required: str             # the requirement from requirements.txt, e.g. "torch==2.13.0"
    version: str | None       # installed version; None when missing
    where: str = ""           # "QGIS's Python", "CloudFree folder" or "CloudFree folder (restart QGIS)"

    @property
    def missing(self) -> bool:
        return self.version is None

    @property
    def text(self) -> str:
        if self.missing:
            return "missing (optional)" if self.package.optional else "missing"
        name = canonical(self.package.name)
        if not within_tested(name, self.version, self.required):
            return f"installed; tested with {tested_range(name, self.required)}"
        return "restart QGIS" if "restart" in self.where else "OK"


# --------------------------------------------------------------------------- what is installed

def canonical(name: str) -> str:
    """PEP 503 name: ``Scikit_Image`` -> ``scikit-image``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_requirements(path: Path = REQUIREMENTS_FILE) -> dict:
    """``requirements.txt`` as ``{canonical name: requirement}``, e.g. ``{"torch": "torch==2.13.0"}``."""
    pins = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.split("#")[0].strip()
            match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
            if match:
                pins[canonical(match.group(0))] = line.replace(" ", "")
    return pins


def _distribution(name: str, paths=None):
    """``(version, folder)`` of the first distribution called ``name`` on ``paths`` (default sys.path)."""
    for dist in importlib.metadata.distributions(name=name, path=list(paths) if paths is not None else sys.path):
        return dist.version, Path(dist.locate_file("")).resolve()
    return None


def _inside(folder: Path, target: Path) -> bool:
    try:
        return folder.resolve() == target.resolve() or target.resolve() in folder.resolve().parents
    except OSError:
        return False


def package_status(package: Package, target: Path, pins: dict) -> Status:
    """Where ``package`` is found: importable here (QGIS's Python or the folder already on sys.path),
    or in ``target`` only (installed in this session: QGIS must restart to use it)."""
    required = pins.get(canonical(package.name), package.name)
    if importlib.util.find_spec(package.module) is not None:
        found = _distribution(package.name)
        if found is None:  # importable under another distribution name (opencv-python, a distro package)
            return Status(package, required, "unknown version", "QGIS's Python")
        where = "CloudFree folder" if _inside(found[1], target) else "QGIS's Python"
        return Status(package, required, found[0], where)
    found = _distribution(package.name, [str(target)]) if target.is_dir() else None
    if found is not None:
        return Status(package, required, found[0], "CloudFree folder (restart QGIS)")
    return Status(package, required, None)


def check(target: Path | None = None, packages=None) -> list:
    """The :class:`Status` of every package, against CloudFree's folder ``target`` (default: this install's)."""
    target = Path(target) if target else target_folder()
    pins = pinned_requirements()
    return [package_status(p, target, pins) for p in (packages or PACKAGES)]


def to_install(statuses, optional: bool = False) -> list:
    """Requirements of the missing packages (optional ones too when asked); never what QGIS ships."""
    return [s.required for s in statuses
            if s.missing and not s.package.from_qgis and (optional or not s.package.optional)]


def report_lines(statuses) -> list:
    """The status table as text lines (command line and Processing log)."""
    rows = [("package", "required", "installed", "status", "where")]
    rows += [(s.package.name, s.required[len(s.package.name):] or "any", s.version or "-", s.text, s.where)
             for s in statuses]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[4] for r in rows]


# --------------------------------------------------------------------------- where things are

def qgis_user_folder(host: Host, environ=None) -> Path:
    """QGIS's user folder (the parent of ``profiles/``), as QGIS itself finds it."""
    environ = os.environ if environ is None else environ
    if environ.get("QGIS_CUSTOM_CONFIG_PATH"):
        return Path(os.path.abspath(environ["QGIS_CUSTOM_CONFIG_PATH"]))
    home = Path(environ.get("HOME") or environ.get("USERPROFILE") or os.path.expanduser("~"))
    if host.system == "Windows":
        return Path(environ.get("APPDATA") or home / "AppData" / "Roaming") / "QGIS" / "QGIS3"
    if host.system == "Darwin":
        return home / "Library" / "Application Support" / "QGIS" / "QGIS3"
    return Path(environ.get("XDG_DATA_HOME") or home / ".local" / "share") / "QGIS" / "QGIS3"


def target_folder(host: Host | None = None, environ=None) -> Path:
    """CloudFree's package folder for this QGIS install: ``.../cloudfree-python/py3.11-<hash of sys.prefix>``."""
    host = host or Host.current()
    key = hashlib.sha256(os.path.normcase(os.path.realpath(host.prefix)).encode()).hexdigest()[:10]
    return qgis_user_folder(host, environ) / FOLDER_NAME / f"py{host.version[0]}.{host.version[1]}-{key}"


def add_target_to_path(target: Path | None = None) -> Path | None:
    """Append CloudFree's folder to ``sys.path`` when it exists (at plugin start, before torch is imported).

    Appended, not prepended: QGIS's own packages (numpy, GDAL, PyQt...) always win over a copy in the
    folder. ``.pth`` files there are not run (plain ``sys.path`` entry, not ``site.addsitedir``).
    """
    target = Path(target) if target else target_folder()
    if not target.is_dir():
        return None
    if str(target) not in sys.path:
        sys.path.append(str(target))
        importlib.invalidate_caches()
    return target


def _windows_python(host: Host, exe: Path) -> list:
    if re.fullmatch(r"pythonw?(\d+(\.\d+)*)?\.exe", exe.name.lower()) and Path(host.prefix) in exe.parents:
        console = exe.with_name(exe.name.lower().replace("pythonw", "python"))
        return [console if console.is_file() else exe]
    # qgis-bin.exe lives in <QGIS root>/bin (OSGeo4W and the standalone installer); its Python in
    # <root>/apps/Python312 (sys.prefix). Only a Python of the running version will do: wheels are per version.
    root = exe.parent.parent
    major, minor = host.version
    return [Path(host.prefix) / "python.exe", root / "apps" / f"Python{major}{minor}" / "python.exe",
            *sorted((root / "bin").glob("python-qgis*.bat"))]


def _mac_python(host: Host, exe: Path) -> list:
    major, minor = host.version
    if exe.name.startswith("python") and Path(host.prefix) in exe.parents:
        return [exe]
    apps = [p for p in exe.parents if p.suffix == ".app"]
    bundled = apps[-1] / "Contents" / "MacOS" / "bin" if apps else None  # QGIS.app/Contents/MacOS/bin/python3
    found = [bundled / "python3", bundled / f"python{major}.{minor}"] if bundled else []
    return found + [Path(host.prefix) / "bin" / f"python{major}.{minor}", Path(host.prefix) / "bin" / "python3"]


def _linux_python(host: Host, exe: Path) -> list:
    major, minor = host.version
    # Embedded in QGIS, sys.executable is QGIS itself, or whatever "python3" comes first on PATH (a pyenv
    # shim, another Python): trusted only inside sys.prefix (a venv's bin/python is).
    if re.fullmatch(r"python(\d+(\.\d+)*)?", exe.name) and Path(host.prefix) in exe.parents:
        return [exe]
    system = shutil.which(f"python{major}.{minor}")  # QGIS on Linux runs the system Python
    return [Path(host.prefix) / "bin" / f"python{major}.{minor}", Path(host.prefix) / "bin" / "python3",
            *([Path(system)] if system else [])]


def python_command(host: Host | None = None) -> list:
    """How to run QGIS's Python: ``[path]``, or ``["cmd", "/c", "python-qgis.bat"]`` as a last resort on Windows."""
    host = host or Host.current()
    exe = Path(host.executable or "qgis")
    finder = {"Windows": _windows_python, "Darwin": _mac_python}.get(host.system, _linux_python)
    candidates = finder(host, exe)
    for candidate in candidates:
        if Path(candidate).is_file():
            return ["cmd", "/c", str(candidate)] if str(candidate).endswith(".bat") else [str(candidate)]
    looked = ", ".join(str(c) for c in candidates) or str(exe)
    raise InstallerError(f"QGIS's Python executable was not found (looked for {looked}). Run "
                         "'python -m cloudfree.dependencies --install' with QGIS's Python yourself.")


def pip_available() -> bool:
    """pip in this Python (QGIS's, when the plugin asks). Debian's QGIS does not pull in python3-pip."""
    return importlib.util.find_spec("pip") is not None


def python_problem(host: Host | None = None) -> str:
    """Why installing cannot work here, in words; empty when it can."""
    host = host or Host.current()
    if not pip_available():
        return ("QGIS's Python has no pip. Install it first: on Debian/Ubuntu 'sudo apt install python3-pip'; "
                "elsewhere 'python -m ensurepip' with QGIS's Python.")
    if tuple(host.version) < MIN_PYTHON:
        return (f"QGIS's Python is {host.version[0]}.{host.version[1]}; torch 2.13.0 needs Python "
                f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer. Use a newer QGIS (3.34 or later).")
    return ""


# --------------------------------------------------------------------------- the pip command

def nvidia_gpu_present(host: Host | None = None) -> bool:
    """An NVIDIA GPU with its driver: ``nvidia-smi`` on PATH, or the driver's /proc entry on Linux."""
    host = host or Host.current()
    if host.system == "Darwin":
        return False
    return shutil.which("nvidia-smi") is not None or (host.system == "Linux" and NVIDIA_DRIVER.exists())


def torch_build(host: Host | None = None, choice: str = "auto") -> str:
    """``"cpu"`` or ``"cuda"``: ``choice`` when given, else CUDA when an NVIDIA GPU is present."""
    if choice in ("cpu", "cuda"):
        return choice
    return "cuda" if nvidia_gpu_present(host) else "cpu"


def torch_index(host: Host, build: str) -> list:
    """pip options that pick torch's CPU or CUDA build.

    PyTorch's index holds ``torch==2.13.0+cpu`` / ``+cu130``, which sort above PyPI's plain 2.13.0, so an
    extra index is enough and the user's own index (a mirror) stays the main one. macOS has one build
    (CPU and Metal) on PyPI; PyPI's Linux torch is already the CUDA build.
    """
    if host.system == "Darwin":
        return []
    if build == "cpu":
        return ["--extra-index-url", TORCH_CPU_INDEX]
    return ["--extra-index-url", TORCH_CUDA_INDEX] if host.system == "Windows" else []


def _valid_version(version: str) -> bool:
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pip vendors it wherever pip is
        from pip._vendor.packaging.version import InvalidVersion, Version
    try:
        Version(version)
        return True
    except InvalidVersion:
        return False


def has_compiled_code(dist) -> bool:
    """Whether a distribution holds extension modules; True when that cannot be told (pinned to be safe).

    Read from its file list (RECORD), or for Debian's egg-info without one, from its top-level modules.
    """
    if dist.files:
        return any(str(f).endswith(EXTENSION_SUFFIXES) for f in dist.files)
    base = Path(dist.locate_file(""))
    names = (dist.read_text("top_level.txt") or "").split() or [canonical(dist.metadata["Name"]).replace("-", "_")]
    known = False
    for name in names:
        folder = base / name
        if folder.is_dir():
            known = True
            if any(p.name.endswith(EXTENSION_SUFFIXES) for p in folder.rglob("*")):
                return True
        elif any(base.glob(f"{name}.*")):
            known = True
            if any(p.name.endswith(EXTENSION_SUFFIXES) for p in base.glob(f"{name}.*")):
                return True
    return not known


def constraints(target: Path | None = None, exclude=()) -> list:
    """``name==version`` lines for numpy and every package of this Python that holds compiled code.

    These are the packages a second version of would break QGIS (numpy under GDAL's bindings, PyQt,
    pyproj, scipy...): pip must resolve torch, scikit-image, OpenCV... against the versions that will
    actually run. Pure-Python packages are left free: pinning them all makes torch uninstallable on
    Debian 12's QGIS (torch 2.13.0 needs setuptools>=77.0.3 and sympy>=1.13.3; Debian has 66.1.1 and
    1.11.1: pip reports ResolutionImpossible). Packages already in ``target`` and those in ``exclude``
    are not pinned; versions pip cannot parse (Debian's ``0.0.0``...) are left out.
    """
    skip = {canonical(n) for n in exclude}
    pinned = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name or canonical(name) in skip or canonical(name) in pinned:
            continue
        if target is not None and _inside(Path(dist.locate_file("")), Path(target)):
            continue
        pinned[canonical(name)] = dist
    return [f"{name}=={dist.version}" for name, dist in sorted(pinned.items())
            if _valid_version(dist.version) and (name == "numpy" or has_compiled_code(dist))]


def command_line(command, windows: bool | None = None) -> str:
    """A command as one line to paste into a shell (cmd quoting on Windows)."""
    windows = platform.system() == "Windows" if windows is None else windows
    return subprocess.list2cmdline(command) if windows else shlex.join(command)


@dataclass(frozen=True)
class InstallPlan:
    """One pip run that installs ``requirements`` into ``target`` with QGIS's Python."""

    python: tuple
    target: Path
    requirements: tuple
    constraints_file: Path
    index_options: tuple = ()

    def command(self, *extra: str) -> list:
        return [*self.python, "-m", "pip", "install", "--target", str(self.target), "--only-binary=:all:",
                "--no-input", "-c", str(self.constraints_file), *self.index_options, *extra, *self.requirements]

    def display(self, windows: bool | None = None) -> str:
        return command_line(self.command(), windows)

    def verify_command(self, modules) -> list:
        """Imports ``modules`` in a fresh QGIS Python with the folder appended to sys.path."""
        return [*self.python, "-c", VERIFY, str(self.target), *modules]


def make_plan(requirements, host: Host | None = None, target: Path | None = None, build: str = "auto",
              python=None) -> InstallPlan:
    """The pip run for ``requirements`` (writes nothing: see :func:`write_constraints`)."""
    host = host or Host.current()
    target = Path(target) if target else target_folder(host)
    wants_torch = any(canonical(re.split(r"[<>=!~ ;\[]", r)[0]) == "torch" for r in requirements)
    index = torch_index(host, torch_build(host, build)) if wants_torch else []
    return InstallPlan(tuple(python or python_command(host)), target, tuple(requirements),
                       target.parent / f"{target.name}-constraints.txt", tuple(index))


def write_constraints(plan: InstallPlan) -> Path:
    """Write the constraints of this Python (see :func:`constraints`) where ``plan`` expects them."""
    names = [re.split(r"[<>=!~ ;\[]", r)[0] for r in plan.requirements]
    lines = constraints(plan.target, exclude=names)
    plan.constraints_file.parent.mkdir(parents=True, exist_ok=True)
    plan.constraints_file.write_text("# QGIS's own packages with compiled code, pinned to the versions present "
                                     "(written by CloudFree)\n" + "".join(f"{line}\n" for line in lines))
    return plan.constraints_file


def shadowed(target: Path) -> list:
    """``(name, version used, version in target)`` for packages QGIS's own copy hides (the folder is last)."""
    found = []
    for dist in importlib.metadata.distributions(path=[str(target)]):
        mine = _distribution(dist.metadata["Name"], [p for p in sys.path if not _inside(Path(p or "."), target)])
        if mine is not None and mine[0] != dist.version:
            found.append((dist.metadata["Name"], mine[0], dist.version))
    return sorted(found)


# --------------------------------------------------------------------------- command line

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudfree.dependencies", description=__doc__.split("\n")[0])
    parser.add_argument("--install", action="store_true", help="install the missing packages (never without it)")
    parser.add_argument("--optional", action="store_true", help="also the optional ones (scikit-learn, dask)")
    parser.add_argument("--torch", choices=("auto", "cpu", "cuda"), default="auto",
                        help="torch build (auto: CUDA when an NVIDIA GPU is present)")
    parser.add_argument("--target", help="install there instead of CloudFree's folder of this QGIS install")
    args = parser.parse_args(argv)
    host = Host.current()
    target = Path(args.target).resolve() if args.target else target_folder(host)
    statuses = check(target)
    print(f"Python: {sys.executable} ({host.version[0]}.{host.version[1]})\nCloudFree folder: {target}\n")
    print("\n".join(report_lines(statuses)))
    wanted = to_install(statuses, args.optional)
    if not wanted:
        print("\nNothing to install.")
        return 0
    plan = make_plan(wanted, host, target, args.torch)
    write_constraints(plan)
    print(f"\nInstall command:\n  {plan.display()}")
    problem = python_problem(host)
    if problem or not args.install:
        print(f"\n{problem or 'Nothing was installed: run again with --install to install them.'}")
        return 1
    if subprocess.call(plan.command()) != 0:
        print("\npip failed: see its messages above. Nothing was added to QGIS's own Python.")
        return 1
    modules = [s.package.module for s in statuses if s.required in wanted]
    if subprocess.call(plan.verify_command(modules)) != 0:
        print("\nThe packages were installed but do not import: see the error above.")
        return 1
    for name, used, there in shadowed(target):
        print(f"note: QGIS's own {name} {used} is used, not {there} from the folder")
    print("\nInstalled. Restart QGIS to use the new packages.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
