#!/usr/bin/python3
"""web/tools/wasm_relaxed.py, which rewrites clang 14's prototype relaxed-SIMD multiply-add opcode into the
final one: on hand-made modules whose immediates hold the same bytes (which must stay), and on bad input.

    tests/web/test_wasm_relaxed.py        (tests/web/run.sh runs it; prints "wasm-relaxed: N passed, M failed")
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(HERE, "..", "..", "web", "tools", "wasm_relaxed.py")
PROTO, FINAL = bytes([0xFD, 0xAF, 0x01]), bytes([0xFD, 0x85, 0x02])


def module(body):
    """A module of one function (v128, v128, v128) -> v128 with this body (locals and end included)."""
    def section(sid, payload):
        assert len(payload) < 128
        return bytes([sid, len(payload)]) + payload
    types = section(1, bytes([1, 0x60, 3, 0x7B, 0x7B, 0x7B, 1, 0x7B]))
    funcs = section(3, bytes([1, 0]))
    code = section(10, bytes([1, len(body)]) + body)
    return b"\0asm\1\0\0\0" + types + funcs + code


# get 0, get 1, get 2, the prototype fma; then an i32.const whose LEB128 is the same three bytes (22525) and a
# v128.const holding them, both dropped; a nested block with a second fma, so both depths are walked.
BODY = (bytes([0, 0x20, 0, 0x20, 1, 0x20, 2]) + PROTO +
        bytes([0x41]) + PROTO + bytes([0x1A]) +
        bytes([0xFD, 0x0C]) + PROTO + bytes(13) + bytes([0x1A]) +
        bytes([0x02, 0x7B, 0x20, 0, 0x20, 1, 0x20, 2]) + PROTO + bytes([0x0B, 0x1A]) +
        bytes([0x0B]))


class WasmRelaxed(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.dir)

    def run_tool(self, data):
        path = os.path.join(self.dir, "m.wasm")
        with open(path, "wb") as f:
            f.write(data)
        run = subprocess.run([sys.executable, TOOL, path], capture_output=True, text=True)
        with open(path, "rb") as f:
            return run, f.read()

    def test_rewrites_instructions_not_immediates(self):
        src = module(BODY)
        run, out = self.run_tool(src)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("2 relaxed multiply-adds", run.stdout)
        self.assertEqual(len(out), len(src))
        self.assertEqual(out.count(FINAL), 2)
        self.assertEqual(out.count(PROTO), 2)  # the i32.const and the v128.const keep their bytes
        self.assertEqual(out, src.replace(bytes([2]) + PROTO + bytes([0x41]), bytes([2]) + FINAL + bytes([0x41]))
                         .replace(bytes([2]) + PROTO + bytes([0x0B]), bytes([2]) + FINAL + bytes([0x0B])))
        if shutil.which("wasm2wat"):  # wabt decodes the result whole (it knows the final opcodes)
            wat = subprocess.run(["wasm2wat", "--enable-relaxed-simd", "-"], input=out, capture_output=True)
            self.assertEqual(wat.returncode, 0, wat.stderr)
            text = wat.stdout.decode()
            self.assertEqual(text.count("f32x4.relaxed_madd"), 2)
            self.assertIn("i32.const 22525", text)

    def test_already_final_is_left_alone(self):
        src = module(BODY.replace(bytes([2]) + PROTO + bytes([0x41]), bytes([2]) + FINAL + bytes([0x41])))
        run, out = self.run_tool(src)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("1 relaxed multiply-adds", run.stdout)

    def test_bad_input_one_line_and_file_kept(self):
        cases = {
            "truncated": module(BODY)[:-5],
            "not wasm": b"GIF89a" + bytes(20),
            "bytes after a body's end": module(BODY + bytes([0x01])),
            "unknown opcode": module(bytes([0, 0xFF, 0x0B])),
        }
        for what, data in cases.items():
            with self.subTest(what):
                run, out = self.run_tool(data)
                self.assertEqual(run.returncode, 1, what)
                self.assertEqual(len(run.stderr.strip().splitlines()), 1, run.stderr)
                self.assertIn("wasm_relaxed.py:", run.stderr)
                self.assertEqual(out, data, "a refused file is left as it was")


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=0).result
    bad = len(result.failures) + len(result.errors)
    print("wasm-relaxed: %d passed, %d failed" % (result.testsRun - bad, bad))
    sys.exit(1 if bad else 0)
