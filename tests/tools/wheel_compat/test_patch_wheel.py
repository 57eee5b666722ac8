"""The wheel patcher against a real loader failure reproduced with a tiny versioned library.

``libdep`` v2 defines ``newer@DEP_2.0``; a module linked against it is then run on a "host" that
only has ``libdep`` v1 (no DEP_2.0), which is exactly the glibc 2.38-on-2.36 situation.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tools.wheel_compat import patch_wheel as pw

ROOT = Path(__file__).resolve().parents[3]


def _cc(folder: Path, name: str, source: str, *flags: str) -> Path:
    src = folder / f"{name}.c"
    src.write_text(textwrap.dedent(source))
    out = folder / f"{name}.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(out), str(src), *flags], check=True)
    return out


@pytest.fixture()
def world(tmp_path: Path) -> dict[str, Path]:
    """new/: libdep v2 and a module built against it; old/: libdep v1, the older host."""
    new, old = tmp_path / "new", tmp_path / "old"
    new.mkdir()
    old.mkdir()
    (tmp_path / "v2.map").write_text(
        "DEP_1.0 { global: older; local: *; };\nDEP_2.0 { global: newer; } DEP_1.0;\n"
    )
    (tmp_path / "v1.map").write_text("DEP_1.0 { global: older; local: *; };\n")
    dep_source = "int older(void) { return 1; }\nint newer(void) { return 2; }\n"
    _cc(new, "libdep", dep_source, "-Wl,-soname,libdep.so", f"-Wl,--version-script={tmp_path / 'v2.map'}")
    _cc(
        old,
        "libdep",
        "int older(void) { return 1; }\n",
        "-Wl,-soname,libdep.so",
        f"-Wl,--version-script={tmp_path / 'v1.map'}",
    )
    module = _cc(
        new,
        "module",
        "int older(void); int newer(void);\nint use(void) { return older() * 100 + newer(); }\n",
        f"-L{new}",
        "-ldep",
    )
    compat = _cc(tmp_path, "libcompat", "int newer(void) { return 42; }\n")
    return {"new": new, "old": old, "module": module, "compat": compat, "tmp": tmp_path}


def _call_use(module: Path, library_dir: Path) -> subprocess.CompletedProcess[str]:
    """Load ``module`` in a fresh process whose loader sees ``library_dir`` and call use()."""
    code = f"import ctypes; print(ctypes.CDLL({str(module)!r}).use())"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"LD_LIBRARY_PATH": str(library_dir), "PATH": "/usr/bin:/bin"},
    )


def test_reads_version_needs_of_a_module(world: dict[str, Path]) -> None:
    needs = {(n.library, n.version) for n in pw.version_needs(world["module"])}
    assert ("libdep.so", "DEP_2.0") in needs
    assert ("libdep.so", "DEP_1.0") in needs


def test_old_host_fails_and_patched_module_loads(world: dict[str, Path]) -> None:
    before = _call_use(world["module"], world["old"])
    assert before.returncode != 0
    assert "DEP_2.0" in before.stderr  # "version `DEP_2.0' not found"

    weakened = pw.patch_extension(world["module"], world["compat"], search_dirs=(world["old"],))

    assert weakened == ["DEP_2.0"]
    assert "libcompat.so" in pw.dynamic_entries(world["module"], "DT_NEEDED")
    assert pw.dynamic_entries(world["module"], "DT_RUNPATH") == ["$ORIGIN"]
    flags = {n.version: n.flags for n in pw.version_needs(world["module"])}
    assert flags["DEP_2.0"] & pw.VER_FLG_WEAK
    assert not flags["DEP_1.0"] & pw.VER_FLG_WEAK
    after = _call_use(world["module"], world["old"])
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == "142"  # older() from the host's libdep, newer() from compat


def test_refuses_when_compat_lacks_a_symbol(world: dict[str, Path]) -> None:
    empty = _cc(world["tmp"], "libempty", "int unrelated(void) { return 0; }\n")
    with pytest.raises(pw.PatchError, match=r"needs newer .*DEP_2\.0.*add them to compat_symbols\.cc"):
        pw.patch_extension(world["module"], empty, search_dirs=(world["old"],))


def test_module_with_nothing_missing_is_left_alone(world: dict[str, Path]) -> None:
    original = world["module"].read_bytes()
    assert pw.patch_extension(world["module"], world["compat"], search_dirs=(world["new"],)) == []
    assert world["module"].read_bytes() == original


def _make_wheel(tmp: Path, module: Path) -> Path:
    tree = tmp / "tree" / "demo-1.0"
    (tree / "demo").mkdir(parents=True)
    (tree / "demo" / "__init__.py").write_text("")
    (tree / "demo" / "module.so").write_bytes(module.read_bytes())
    info = tree / "demo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n")
    (info / "WHEEL").write_text(
        "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
        "Tag: cp311-cp311-manylinux_2_39_x86_64\n"
    )
    (info / "RECORD").write_text("")
    out = tmp / "dist"
    out.mkdir()
    subprocess.run([sys.executable, "-m", "wheel", "pack", "--dest-dir", str(out), str(tree)], check=True)
    return next(out.glob("*.whl"))


def test_patch_wheel_retags_and_ships_the_compat_library(
    world: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = _make_wheel(world["tmp"], world["module"])
    assert wheel.name == "demo-1.0-cp311-cp311-manylinux_2_39_x86_64.whl"
    real_lookup = pw.host_library_path
    monkeypatch.setattr(pw, "host_library_path", lambda name, dirs=(): real_lookup(name, (world["old"],)))

    patched = pw.patch_wheel(wheel, world["compat"], world["tmp"] / "out")

    assert patched.name == "demo-1.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(patched) as archive:
        names = set(archive.namelist())
        record = archive.read("demo-1.0.dist-info/RECORD").decode()
    assert {"demo/module.so", "demo/libcompat.so"} <= names
    assert "demo/libcompat.so,sha256=" in record
    # `wheel unpack` verifies every RECORD hash, so a stale RECORD would fail here.
    subprocess.run(
        [sys.executable, "-m", "wheel", "unpack", "--dest", str(world["tmp"] / "check"), str(patched)],
        check=True,
        capture_output=True,
    )
    loaded = _call_use(world["tmp"] / "check" / "demo-1.0" / "demo" / "module.so", world["old"])
    assert loaded.stdout.strip() == "142", loaded.stderr


def test_wheel_without_missing_versions_is_refused(
    world: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = _make_wheel(world["tmp"], world["module"])
    real_lookup = pw.host_library_path
    monkeypatch.setattr(pw, "host_library_path", lambda name, dirs=(): real_lookup(name, (world["new"],)))
    with pytest.raises(pw.PatchError, match="nothing to patch"):
        pw.patch_wheel(wheel, world["compat"], world["tmp"] / "out")


def test_compat_library_defines_the_six_symbols(tmp_path: Path) -> None:
    library = tmp_path / "libtfx_canary_compat.so"
    source = ROOT / "tools" / "wheel_compat" / "compat_symbols.cc"
    subprocess.run(["g++", "-shared", "-fPIC", "-O2", "-o", str(library), str(source)], check=True)
    assert {
        "_ZSt21ios_base_library_initv",
        "__cxa_call_terminate",
        "__isoc23_strtol",
        "__isoc23_strtoll",
        "__isoc23_strtoul",
        "__isoc23_strtoull",
    } <= pw.exported_symbols(library)
    # strto* forward to the classic parsers.
    code = (
        f"import ctypes; lib = ctypes.CDLL({str(library)!r}); f = lib.__isoc23_strtoll; "
        "f.restype = ctypes.c_longlong; print(f(b'-0x1f', None, 16), lib.__isoc23_strtol(b'077', None, 0))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["-31", "63"]
