"""Field offsets of kernel structs, read from the kernel's own BTF.

bpftrace resolves a ``$sk->sk_protocol`` by turning the BTF of every type
it reaches into C and parsing that with clang, one level of nesting per
pass: for the few structs record --calls ebpf reads (task_struct down to
sock) that is seconds before the program may start. With the byte offsets
known, the script reads the same fields as ``*(uint16 *)($sk + 498)``,
which bpftrace compiles at once. The offsets come from this kernel's
``/sys/kernel/btf/vmlinux`` (the format: Documentation/bpf/btf.rst), so
they are this kernel's, never guessed.
"""

from __future__ import annotations

import functools
import struct
from pathlib import Path
from typing import Optional

VMLINUX = Path("/sys/kernel/btf/vmlinux")

_STRUCT, _UNION = 4, 5
_EXTRA = {1: 4, 3: 12, 14: 4, 17: 4}  # kind -> bytes after btf_type (INT, ARRAY, VAR, DECL_TAG)
_PER_MEMBER = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}  # kind -> bytes per vlen entry


class Offsets:
    """Named structs of one BTF blob and where their members are."""

    def __init__(self, blob: bytes):
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, _str_len = struct.unpack_from("<HBBIIIII", blob)
        if magic != 0xEB9F:
            raise ValueError("not BTF (magic)")
        self._blob = blob
        self._strings = hdr_len + str_off
        self._types: list[int] = [0]  # type id -> its position (id 0 is void)
        self._structs: dict[bytes, int] = {}
        self._last = 0  # the type of the member offset() found last (member() reads its size)
        at, end = hdr_len + type_off, hdr_len + type_off + type_len
        unpack = struct.Struct("<III").unpack_from
        while at < end:
            name_off, info, _ = unpack(blob, at)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            self._types.append(at)
            if kind in (_STRUCT, _UNION) and name_off:
                self._structs.setdefault(self._name(name_off), len(self._types) - 1)
            at += 12 + _EXTRA.get(kind, 0) + vlen * _PER_MEMBER.get(kind, 0)

    def _name(self, name_off: int) -> bytes:
        start = self._strings + name_off
        return self._blob[start:self._blob.index(b"\0", start)]

    def _members(self, type_id: int):
        at = self._types[type_id]
        _, info, _ = struct.unpack_from("<III", self._blob, at)
        bitfields = bool(info >> 31)
        for n in range(info & 0xFFFF):
            name_off, member_type, offset = struct.unpack_from("<III", self._blob, at + 12 + 12 * n)
            yield self._name(name_off) if name_off else b"", member_type, \
                (offset & 0xFFFFFF if bitfields else offset), (offset >> 24 if bitfields else 0)

    def _resolve(self, type_id: int) -> int:
        """Through typedef, const, volatile, restrict and type tags to the type itself."""
        while True:
            _, info, next_id = struct.unpack_from("<III", self._blob, self._types[type_id])
            if (info >> 24) & 0x1F not in (8, 9, 10, 11, 18):
                return type_id
            type_id = next_id

    def _find(self, type_id: int, field: bytes) -> Optional[tuple[int, int, int]]:
        """(bit offset, bit size if a bitfield, member type) of `field`, in anonymous members too."""
        for name, member_type, bits, size in self._members(type_id):
            if name == field:
                return bits, size, member_type
            if not name:
                inner = self._resolve(member_type)
                _, info, _ = struct.unpack_from("<III", self._blob, self._types[inner])
                if (info >> 24) & 0x1F in (_STRUCT, _UNION):
                    found = self._find(inner, field)
                    if found is not None:
                        return found[0] + bits, found[1], found[2]
        return None

    def size(self, type_id: int) -> int:
        """Bytes of a type (pointers: 8, this module reads 64-bit kernels)."""
        type_id = self._resolve(type_id)
        _, info, size = struct.unpack_from("<III", self._blob, self._types[type_id])
        kind = (info >> 24) & 0x1F
        if kind == 2:
            return 8
        if kind == 3:
            element, _index, count = struct.unpack_from("<III", self._blob, self._types[type_id] + 12)
            return count * self.size(element)
        return size

    def member(self, struct_name: str, path: str) -> tuple[int, int]:
        """(byte offset, byte size) of `path` ("__sk_common.skc_num") in struct
        `struct_name`; KeyError when a struct or field is missing or a field is
        a bitfield."""
        offset = self.offset(struct_name, path)
        return offset, self.size(self._last)

    def offset(self, struct_name: str, path: str) -> int:
        """Byte offset of `path` ("__sk_common.skc_num") in struct `struct_name`;
        KeyError when a struct or field is missing or a field is a bitfield."""
        type_id = self._structs.get(struct_name.encode())
        if type_id is None:
            raise KeyError(f"struct {struct_name}")
        total = 0
        for part in path.split("."):
            found = self._find(type_id, part.encode())
            if found is None or found[1] or found[0] % 8:
                raise KeyError(f"{struct_name}.{path}" + (" (a bitfield)" if found else ""))
            total += found[0] // 8
            self._last = found[2]
            type_id = self._resolve(found[2])
        return total


_SIZES = {"uint64": 8, "int64": 8, "uint32": 4, "int32": 4, "uint16": 2, "in6": 16}


@functools.lru_cache(maxsize=None)
def kernel_offsets(fields: tuple[tuple[str, str, str], ...], path: str = str(VMLINUX)) -> Optional[dict[str, int]]:
    """{"struct.field.path": byte offset} for `fields` ((struct, member path,
    type read: uint16, int32, uint64, in6...) each) in this kernel, or None
    when the BTF cannot be read, lacks one of them or a member is not the
    size the script reads (then bpftrace resolves the types itself, slower)."""
    try:
        offsets = Offsets(Path(path).read_bytes())
        found = {}
        for name, field, ctype in fields:
            offset, size = offsets.member(name, field)
            if size != _SIZES[ctype]:
                return None
            found[f"{name}.{field}"] = offset
        return found
    except (OSError, ValueError, KeyError, IndexError, struct.error):
        return None
