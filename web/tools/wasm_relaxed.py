#!/usr/bin/env python3
"""Rewrites the relaxed-SIMD multiply-adds that Emscripten 3.1.6 emits into their final opcodes.

Debian's Emscripten 3.1.6 (clang 14) knows relaxed SIMD only as the proposal's prototype: its
f32x4.relaxed_fma is encoded 0xfd 0xaf 0x01, an opcode that shipping engines reject. The final standard
(in Chromium since 114) encodes f32x4.relaxed_madd as 0xfd 0x85 0x02 and f32x4.relaxed_nmadd as 0xfd 0x86
0x02 -- the same length, so the module is patched in place. The code section is decoded instruction by
instruction (a byte pattern search could hit an immediate), and every function body has to end exactly at
its declared size, or the file is refused.

    wasm_relaxed.py IN.wasm [OUT.wasm]      # OUT defaults to IN; prints how many instructions changed

Exit status 1 with a one-line message on a module this cannot decode.
"""
import sys

# Prototype (clang 14) -> final opcodes of the 0xfd prefix. Both take no immediates.
PATCH = {0xAF: 0x105,   # f32x4.relaxed_fma  -> f32x4.relaxed_madd  (a * b + c)
         0xB0: 0x106}   # f32x4.relaxed_fms  -> f32x4.relaxed_nmadd (-(a * b) + c)
# The prototype's f64x2 forms (0xcf, 0xd0) would be final 0x107/0x108; the project emits none, so they are
# refused below rather than rewritten untested.
REFUSE = {0xCF, 0xD0}


class Bad(Exception):
    pass


class Reader:
    def __init__(self, data, pos, end):
        self.d, self.p, self.end = data, pos, end

    def byte(self):
        if self.p >= self.end:
            raise Bad(f"truncated at byte {self.p}")
        b = self.d[self.p]
        self.p += 1
        return b

    def uleb(self):
        result, shift = 0, 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result
            if shift > 70:
                raise Bad(f"LEB128 too long at byte {self.p}")

    sleb = uleb  # only skipped here: the value does not matter, the length does

    def skip(self, n):
        if self.p + n > self.end:
            raise Bad(f"truncated at byte {self.p}")
        self.p += n

    def memarg(self):
        self.uleb()
        self.uleb()

    def blocktype(self):
        b = self.d[self.p] if self.p < self.end else None
        if b is None:
            raise Bad(f"truncated at byte {self.p}")
        if b == 0x40 or b in (0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F):
            self.p += 1
        else:
            self.sleb()  # a type index (s33)


def fd_immediates(r, op):
    if op <= 0x0B or op in (0x5C, 0x5D):  # v128 loads/stores, load32_zero / load64_zero
        r.memarg()
    elif op in (0x0C, 0x0D):  # v128.const, i8x16.shuffle
        r.skip(16)
    elif 0x15 <= op <= 0x22:  # extract_lane / replace_lane
        r.skip(1)
    elif 0x54 <= op <= 0x5B:  # load/store lane
        r.memarg()
        r.skip(1)


def fc_immediates(r, op):
    if op <= 7:
        return  # saturating truncations
    if op == 8:      # memory.init
        r.uleb(); r.skip(1)
    elif op == 9:    # data.drop
        r.uleb()
    elif op == 10:   # memory.copy
        r.skip(2)
    elif op == 11:   # memory.fill
        r.skip(1)
    elif op in (12, 14):  # table.init, table.copy
        r.uleb(); r.uleb()
    elif op in (13, 15, 16, 17):  # elem.drop, table.grow / size / fill
        r.uleb()
    else:
        raise Bad(f"unknown 0xfc opcode {op} at byte {r.p}")


def patch_body(data, r, counts):
    nlocals = r.uleb()
    for _ in range(nlocals):
        r.uleb()
        r.skip(1)
    depth = 1
    while depth:
        op = r.byte()
        if op in (0x02, 0x03, 0x04, 0x06):  # block, loop, if, try
            r.blocktype()
            depth += 1
        elif op == 0x0B:  # end
            depth -= 1
        elif op in (0x05, 0x19, 0x00, 0x01, 0x0F, 0x1A, 0x1B):  # else, catch_all, unreachable, nop, return, drop, select
            pass
        elif op in (0x07, 0x08, 0x09, 0x0C, 0x0D, 0x10, 0x12, 0x18, 0xD2):  # catch, throw, rethrow, br, br_if, call, return_call, delegate, ref.func
            r.uleb()
        elif op == 0x0E:  # br_table
            for _ in range(r.uleb() + 1):
                r.uleb()
        elif op in (0x11, 0x13):  # call_indirect, return_call_indirect
            r.uleb(); r.uleb()
        elif op == 0x1C:  # select with types
            r.skip(r.uleb())
        elif 0x20 <= op <= 0x26:  # local / global get set tee, table.get / set
            r.uleb()
        elif 0x28 <= op <= 0x3E:  # loads and stores
            r.memarg()
        elif op in (0x3F, 0x40):  # memory.size / grow
            r.skip(1)
        elif op in (0x41, 0x42):  # i32.const, i64.const
            r.sleb()
        elif op == 0x43:
            r.skip(4)
        elif op == 0x44:
            r.skip(8)
        elif 0x45 <= op <= 0xC4 or op == 0xD1:  # numeric operators without immediates, ref.is_null
            pass
        elif op == 0xD0:  # ref.null t
            r.skip(1)
        elif op == 0xFC:
            fc_immediates(r, r.uleb())
        elif op == 0xFE:  # atomics: fence has one zero byte, all others a memarg
            if r.uleb() == 0x03:
                r.skip(1)
            else:
                r.memarg()
        elif op == 0xFD:
            at = r.p
            sub = r.uleb()
            if sub in PATCH:
                if r.p - at != 2:
                    raise Bad(f"opcode 0xfd {sub:#x} at byte {at} is not encoded in two bytes")
                new = PATCH[sub]
                data[at] = (new & 0x7F) | 0x80
                data[at + 1] = new >> 7
                counts[sub] = counts.get(sub, 0) + 1
            elif sub in REFUSE:
                raise Bad(f"f64x2 relaxed multiply-add (prototype opcode {sub:#x}) at byte {at}: not handled")
            else:
                fd_immediates(r, sub)
        else:
            raise Bad(f"unknown opcode {op:#x} at byte {r.p - 1}")


def patch(data):
    if data[:8] != b"\0asm\1\0\0\0":
        raise Bad("not a WebAssembly module (version 1)")
    r = Reader(data, 8, len(data))
    counts = {}
    while r.p < len(data):
        sid = r.byte()
        size = r.uleb()
        start, end = r.p, r.p + size
        if end > len(data):
            raise Bad(f"section {sid} runs past the end of the file")
        if sid == 10:
            cr = Reader(data, start, end)
            for i in range(cr.uleb()):
                body = cr.uleb()
                br = Reader(data, cr.p, cr.p + body)
                patch_body(data, br, counts)
                if br.p != cr.p + body:
                    raise Bad(f"function body {i} decodes to {br.p - cr.p} bytes, declared {body}")
                cr.p += body
            if cr.p != end:
                raise Bad("code section size does not match its bodies")
        r.p = end
    return counts


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: wasm_relaxed.py IN.wasm [OUT.wasm]", file=sys.stderr)
        return 2
    src, dst = argv[1], argv[2] if len(argv) == 3 else argv[1]
    try:
        with open(src, "rb") as f:
            data = bytearray(f.read())
        counts = patch(data)
    except (OSError, Bad) as e:
        print(f"wasm_relaxed.py: {src}: {e}", file=sys.stderr)
        return 1
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    import os
    os.replace(tmp, dst)
    print(f"wasm_relaxed.py: {dst}: {sum(counts.values())} relaxed multiply-adds now in their final encoding")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
