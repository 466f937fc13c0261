"""The dependency installer without QGIS: the package table, QGIS's Python on each platform, the folder,
the constraints, torch's CPU or CUDA build, the pip command, and one real install into a --target folder."""

import importlib.util
import platform
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

from cloudfree import dependencies as deps
from cloudfree.dependencies import Host, Package

PIP_OPTIONS = ["-m", "pip", "install", "--target"]


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def plan(host, target, build, python=None):
    return deps.make_plan(["torch==2.13.0", "safetensors==0.4.5"], host, target, build, python)


# --------------------------------------------------------------------------- the package table

def test_every_package_is_pinned_in_requirements_txt():
    pins = deps.pinned_requirements()
    for package in deps.PACKAGES:
        required = pins[deps.canonical(package.name)]
        assert required.startswith(package.name)
        if not package.from_qgis:
            assert "==" in required, f"{package.name} is not pinned in requirements.txt"
    assert pins["numpy"] == "numpy>=1.24,<2" and pins["torch"] == "torch==2.13.0"
    assert {p.module for p in deps.PACKAGES} >= {"torch", "safetensors", "skimage", "cv2", "onnxruntime", "onnx",
                                                 "ukis_csmask"}


def test_status_of_present_and_missing_packages(tmp_path):
    absent = Package("cloudfree-no-such-package", "cloudfree_no_such_package", "test")
    statuses = deps.check(tmp_path / "folder", [deps.PACKAGES[0], absent])
    assert statuses[0].version == numpy.__version__ and statuses[0].where == "QGIS's Python" and not statuses[0].missing
    assert statuses[1].missing and statuses[1].text == "missing" and statuses[1].required == absent.name
    assert deps.to_install(statuses) == [absent.name]
    optional = deps.check(tmp_path, [Package("cloudfree-no-such-package", "cloudfree_no_such_package", "t", True)])
    assert deps.to_install(optional) == [] and deps.to_install(optional, optional=True) == [absent.name]
    numpy_missing = [deps.Status(deps.PACKAGES[0], "numpy>=1.24,<2", None)]
    assert deps.to_install(numpy_missing) == []  # numpy comes with QGIS: never installed by CloudFree
    lines = deps.report_lines(statuses)
    assert lines[1].split()[:4] == ["numpy", ">=1.24,<2", numpy.__version__, "OK"]


# --------------------------------------------------------------------------- QGIS's Python and the command

def test_linux_command_uses_the_system_python_when_qgis_is_the_executable(tmp_path):
    python = touch(tmp_path / "usr" / "bin" / "python3.11")
    host = Host("Linux", "/usr/bin/qgis", str(tmp_path / "usr"), (3, 11))
    target = tmp_path / "folder"
    command = plan(host, target, "cpu").command()
    assert command == [str(python), *PIP_OPTIONS, str(target), "--only-binary=:all:", "--no-input",
                       "-c", str(tmp_path / "folder-constraints.txt"),
                       "--extra-index-url", "https://download.pytorch.org/whl/cpu",
                       "torch==2.13.0", "safetensors==0.4.5"]
    assert "--extra-index-url" not in plan(host, target, "cuda").command()  # PyPI's Linux torch is the CUDA build


def test_linux_command_uses_sys_executable_when_it_is_the_python_of_sys_prefix(tmp_path, monkeypatch):
    python = touch(tmp_path / "venv" / "bin" / "python")
    monkeypatch.setattr(sys, "executable", str(python))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    assert deps.python_command() == [str(python)]
    # embedded in QGIS, sys.executable may be the first python3 on PATH (a pyenv shim): not QGIS's Python
    system = touch(tmp_path / "usr" / "bin" / "python3.11")
    shim = str(touch(tmp_path / "pyenv" / "shims" / "python3"))
    assert deps.python_command(Host("Linux", shim, str(tmp_path / "usr"), (3, 11))) == [str(system)]
    command = deps.make_plan(["tomli-w"], target=tmp_path / "t").command()
    assert command[:5] == [str(python), *PIP_OPTIONS] and "--extra-index-url" not in command  # no torch, no index


def test_windows_osgeo4w_command_never_uses_qgis_bin_exe(tmp_path, monkeypatch):
    root = tmp_path / "OSGeo4W"
    qgis_bin = touch(root / "bin" / "qgis-bin.exe")
    python = touch(root / "apps" / "Python312" / "python.exe")
    monkeypatch.setattr(sys, "executable", str(qgis_bin))
    monkeypatch.setattr(sys, "prefix", str(root / "apps" / "Python312"))
    monkeypatch.setattr(platform, "system", lambda: "Windows")
    host = Host.current()
    assert host.system == "Windows" and deps.python_command() == [str(python)]
    cuda = plan(host, tmp_path / "folder", "cuda")
    assert cuda.command()[0] == str(python) and "qgis-bin.exe" not in " ".join(cuda.command())
    assert cuda.command()[-4:-2] == ["--extra-index-url", "https://download.pytorch.org/whl/cu130"]
    assert plan(host, tmp_path / "folder", "cpu").command()[-4:-2] == ["--extra-index-url", deps.TORCH_CPU_INDEX]
    assert cuda.display(windows=True).startswith(str(python))


def test_windows_standalone_layouts(tmp_path):
    root = tmp_path / "QGIS 3.34.4"
    exe = str(touch(root / "bin" / "qgis-bin.exe"))
    # prefix without python.exe (a relocated install): apps/Python3XY of the running version, never another one
    touch(root / "apps" / "Python39" / "python.exe")
    same = touch(root / "apps" / "Python312" / "python.exe")
    assert deps.python_command(Host("Windows", exe, str(root / "elsewhere"), (3, 12))) == [str(same)]
    with pytest.raises(deps.InstallerError):
        deps.python_command(Host("Windows", exe, str(root / "elsewhere"), (3, 11)))
    # only the batch launcher: run through cmd
    other = tmp_path / "other"
    batch = touch(other / "bin" / "python-qgis-ltr.bat")
    assert deps.python_command(Host("Windows", str(touch(other / "bin" / "qgis-bin.exe")), str(other), (3, 12))) == \
        ["cmd", "/c", str(batch)]
    # python.exe itself (the OSGeo4W shell), pythonw.exe swapped for its console twin
    console = touch(tmp_path / "py" / "python.exe")
    pythonw = str(touch(tmp_path / "py" / "pythonw.exe"))
    assert deps.python_command(Host("Windows", pythonw, str(tmp_path), (3, 12))) == [str(console)]


def test_macos_command_uses_the_app_bundle_python(tmp_path):
    app = tmp_path / "Applications" / "QGIS.app"
    exe = touch(app / "Contents" / "MacOS" / "QGIS")
    python = touch(app / "Contents" / "MacOS" / "bin" / "python3")
    host = Host("Darwin", str(exe), str(app / "Contents" / "Frameworks" / "Python.framework"), (3, 11))
    for build in ("cpu", "cuda"):  # one torch build on macOS, from PyPI
        command = plan(host, tmp_path / "folder", build).command()
        assert command[0] == str(python) and "--extra-index-url" not in command


def test_no_python_found_is_a_clear_error(tmp_path):
    host = Host("Windows", str(tmp_path / "bin" / "qgis-bin.exe"), str(tmp_path / "apps" / "Python312"), (3, 12))
    with pytest.raises(deps.InstallerError, match="QGIS's Python executable was not found.*python.exe"):
        deps.python_command(host)


# --------------------------------------------------------------------------- folder, GPU, constraints

def test_target_folder_is_keyed_by_python_version_and_install(tmp_path):
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "HOME": str(tmp_path)}
    a = deps.target_folder(Host("Linux", "/usr/bin/qgis", "/usr", (3, 11)), env)
    assert a.parent == tmp_path / "data" / "QGIS" / "QGIS3" / "cloudfree-python" and a.name.startswith("py3.11-")
    assert a == deps.target_folder(Host("Linux", "/usr/bin/python3", "/usr", (3, 11)), env)
    assert a != deps.target_folder(Host("Linux", "/usr/bin/qgis", "/opt/qgis", (3, 11)), env)
    assert deps.target_folder(Host("Linux", "q", "/usr", (3, 12)), env).name.startswith("py3.12-")
    win = deps.target_folder(Host("Windows", "q", "C:/OSGeo4W/apps/Python312", (3, 12)),
                             {"APPDATA": "C:/Users/a/AppData"})
    assert win.parent == Path("C:/Users/a/AppData/QGIS/QGIS3/cloudfree-python")
    mac = deps.target_folder(Host("Darwin", "q", "/Applications/QGIS.app", (3, 11)), {"HOME": "/Users/a"})
    assert mac.parent == Path("/Users/a/Library/Application Support/QGIS/QGIS3/cloudfree-python")
    custom = deps.target_folder(Host("Linux", "q", "/usr", (3, 11)), {"QGIS_CUSTOM_CONFIG_PATH": str(tmp_path / "p")})
    assert custom.parent == tmp_path / "p" / "cloudfree-python"


def test_torch_build_follows_the_nvidia_gpu(tmp_path, monkeypatch):
    linux, windows, mac = (Host(s, "python", "/usr", (3, 11)) for s in ("Linux", "Windows", "Darwin"))
    monkeypatch.setattr(deps, "NVIDIA_DRIVER", tmp_path / "no-driver")
    monkeypatch.setattr(deps.shutil, "which", lambda name: None)
    assert deps.torch_build(linux) == deps.torch_build(windows) == "cpu"
    touch(tmp_path / "no-driver")  # the driver is loaded, nvidia-smi not on PATH
    assert deps.torch_build(linux) == "cuda" and deps.torch_build(windows) == "cpu"
    monkeypatch.setattr(deps.shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
    assert deps.torch_build(windows) == "cuda" and deps.torch_build(mac) == "cpu"
    assert deps.torch_build(linux, "cpu") == "cpu" and deps.torch_build(mac, "cuda") == "cuda"
    assert deps.torch_index(mac, "cuda") == [] and deps.torch_index(linux, "cuda") == []


def test_constraints_pin_numpy_and_compiled_packages_to_the_running_versions(tmp_path):
    lines = deps.constraints()
    assert f"numpy=={numpy.__version__}" in lines
    names = {line.split("==")[0] for line in lines}
    assert "pytest" not in names and "pluggy" not in names  # pure Python: left free
    assert "numpy" not in {line.split("==")[0] for line in deps.constraints(exclude=["NumPy"])}
    written = deps.write_constraints(deps.make_plan(["tomli-w"], target=tmp_path / "folder", python=["python"]))
    assert written == tmp_path / "folder-constraints.txt"
    assert f"numpy=={numpy.__version__}\n" in written.read_text()


def test_add_target_to_path_appends_once(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert deps.add_target_to_path(tmp_path / "absent") is None
    assert deps.add_target_to_path(tmp_path) == tmp_path and deps.add_target_to_path(tmp_path) == tmp_path
    assert sys.path[-1] == str(tmp_path) and sys.path.count(str(tmp_path)) == 1


def test_command_line_reports_and_never_installs_without_the_flag(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(deps, "PACKAGES", deps.PACKAGES[:2] + (Package("cloudfree-no-such-package",
                                                                         "cloudfree_no_such_package", "test"),))
    monkeypatch.setattr(deps.subprocess, "call", lambda *a, **k: pytest.fail("pip ran without --install"))
    assert deps.main(["--target", str(tmp_path / "folder")]) == 1
    out = capsys.readouterr().out
    assert "cloudfree-no-such-package" in out and "missing" in out and "--install" in out
    assert f"--target {tmp_path / 'folder'}" in out and not (tmp_path / "folder").exists()


# --------------------------------------------------------------------------- a real install

def test_real_install_into_a_target_folder_is_found_there(tmp_path, monkeypatch):
    """tomli-w (pure Python, 10 kB, not installed here) from the registry with the module's own command."""
    if importlib.util.find_spec("tomli_w") is not None:
        pytest.skip("tomli-w is already installed in this Python")
    target = tmp_path / "cloudfree-python" / "py-test"
    install = deps.make_plan(["tomli-w"], target=target)
    deps.write_constraints(install)
    done = subprocess.run(install.command(), capture_output=True, text=True, timeout=180)
    if done.returncode and any(s in done.stdout + done.stderr for s in (
            "No matching distribution", "NewConnectionError", "Could not fetch URL", "Network is unreachable")):
        pytest.skip("the package registry is unreachable: " + done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stdout + done.stderr
    status = deps.package_status(Package("tomli-w", "tomli_w", "test"), target, {})
    assert status.version and status.version[0].isdigit() and status.where == "CloudFree folder (restart QGIS)"
    imported = subprocess.run(install.verify_command(["tomli_w"]), capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0 and "imported tomli_w" in imported.stdout, imported.stderr
    monkeypatch.setattr(sys, "path", list(sys.path))
    deps.add_target_to_path(target)  # what the plugin does when QGIS starts again
    assert deps.package_status(Package("tomli-w", "tomli_w", "test"), target, {}).where == "CloudFree folder"
    assert deps.shadowed(target) == []


def test_debian_builds_inside_the_tested_ranges_are_ok():
    torch = next(p for p in deps.PACKAGES if p.name == "torch")
    assert deps.Status(torch, "torch==2.13.0", "2.6.0+debian").text == "OK"       # Debian 13
    assert deps.Status(torch, "torch==2.13.0", "2.14.1").text == "OK"             # Debian forky
    assert deps.Status(torch, "torch==2.13.0", "2.2.0").text == "installed; tested with 2.6-2.14"
    numpy_pkg = next(p for p in deps.PACKAGES if p.name == "numpy")
    assert deps.Status(numpy_pkg, "numpy>=1.24,<2", "2.2.4").text == "OK"
    assert deps.within_tested("ukis-csmask", "1.0.0", "ukis-csmask==1.0.0")
    assert not deps.within_tested("ukis-csmask", "1.1.0", "ukis-csmask==1.0.0")
