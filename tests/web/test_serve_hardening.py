#!/usr/bin/env python3
"""serve.py hardening (issue 9), beyond test_serve.py: symlinked folders and relative symlinks that lead
outside the root, double and invalid percent-encodings, absolute-form request targets, malformed and
oversized requests, unknown methods, isolation headers on every error (HEAD included), loopback binding
checked from a non-loopback address, and --host honoured when given.
Plain unittest (no pytest):  python3 tests/web/test_serve_hardening.py"""
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import unittest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
ISOLATION = {'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp',
             'Cross-Origin-Resource-Policy': 'same-origin'}


def start_server(root, *extra):
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'serve.py'), '--port', '0', '--root', root, '--quiet',
                             *extra], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith('serving '), line
    host, port = line.strip().rsplit('http://', 1)[1].rstrip('/').rsplit(':', 1)
    return proc, host, int(port)


def stop_server(proc):
    proc.terminate()
    proc.wait(10)
    proc.stdout.close()


def non_loopback_ipv4():
    """This machine's address on its default route (no packet is sent), or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(('10.255.255.255', 1))
        ip = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if ip.startswith('127.') or ip == '0.0.0.0' else ip


def raw_request(host, port, data):
    """Sends raw bytes, returns (status line, headers dict, body) of the reply."""
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        reply = b''
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n')
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(':')
        headers[k.strip()] = v.strip()
    return lines[0], headers, body


class ServeHardeningTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        base = cls.tmp.name
        root = os.path.join(base, 'www')
        outside = os.path.join(base, 'outside')
        os.makedirs(os.path.join(root, 'sub'))
        os.makedirs(outside)
        with open(os.path.join(root, 'sub', 'index.html'), 'w') as f:
            f.write('sub')
        with open(os.path.join(root, 'index.html'), 'w') as f:
            f.write('<!doctype html><title>ok</title>')
        with open(os.path.join(root, '%2e%2e'), 'w') as f:  # a file literally named %2e%2e
            f.write('literal')
        for name in ('secret.txt', os.path.join('outside', 'secret.txt')):
            with open(os.path.join(base, name), 'w') as f:
                f.write('SECRET')
        os.symlink(outside, os.path.join(root, 'linkdir'))                          # folder symlink, absolute
        os.symlink('../secret.txt', os.path.join(root, 'rel.txt'))                  # relative symlink
        os.symlink('../../outside', os.path.join(root, 'sub', 'up'))                # relative folder symlink
        os.symlink(os.path.join(root, 'rel.txt'), os.path.join(root, 'chain.txt'))  # symlink to a symlink
        os.symlink('/etc/passwd', os.path.join(root, 'passwd'))
        os.symlink('/etc', os.path.join(root, 'etc'))
        cls.root = root
        cls.proc, cls.host, cls.port = start_server(root)

    @classmethod
    def tearDownClass(cls):
        stop_server(cls.proc)
        cls.tmp.cleanup()

    def req(self, method, path, headers=None):
        c = http.client.HTTPConnection(self.host, self.port, timeout=10)
        c.putrequest(method, path, skip_host=False, skip_accept_encoding=True)  # path sent as is
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        data = r.read()
        c.close()
        return r, data

    def assert_isolated(self, headers, what):
        get = headers.getheader if hasattr(headers, 'getheader') else headers.get
        for k, v in ISOLATION.items():
            self.assertEqual(get(k), v, f'{k} on {what}')

    def assert_refused(self, r, data, path):
        self.assertIn(r.status, (400, 403, 404), path)
        self.assertNotIn(b'SECRET', data, path)
        self.assertNotIn(b'root:', data, path)
        self.assert_isolated(r, path)

    def test_symlinks_leading_outside(self):
        for path in ['/linkdir/secret.txt', '/linkdir/', '/linkdir', '/rel.txt', '/chain.txt', '/sub/up/secret.txt',
                     '/passwd', '/etc/passwd', '/etc/', '/%6cinkdir/secret.txt', '/sub/%75p/secret.txt']:
            r, data = self.req('GET', path)
            self.assert_refused(r, data, path)
            r, data = self.req('HEAD', path)
            self.assert_refused(r, data, 'HEAD ' + path)

    def test_encodings(self):
        # Double encoding names a file literally called "%2e%2e", never the parent folder.
        r, data = self.req('GET', '/%252e%252e')
        self.assertEqual((r.status, data), (200, b'literal'))
        for path in ['/%252e%252e/secret.txt', '/%2e%2e%2fsecret.txt', '/.%2e/secret.txt', '/%2e./secret.txt',
                     '/sub/%2E%2e/%2e%2E/secret.txt', '/%c0%ae%c0%ae/secret.txt', '/%ff', '/%2e%2e%5csecret.txt',
                     '/sub%2f..%2f..%2fsecret.txt', '/%2e%2e/%2e%2e/%2e%2e/etc/passwd', '/..;/secret.txt',
                     '/sub/..%00/secret.txt', '/%u002e%u002e/secret.txt']:
            r, data = self.req('GET', path)
            self.assert_refused(r, data, path)

    def test_absolute_paths(self):
        for path in ['http://127.0.0.1/../secret.txt', 'http://example.com/etc/passwd', '//etc/passwd',
                     '///etc/passwd', '/' + os.path.join(self.tmp.name, 'secret.txt').lstrip('/'),
                     os.path.join(self.tmp.name, 'secret.txt'), 'file:///etc/passwd', '*']:
            r, data = self.req('GET', path)
            self.assert_refused(r, data, path)

    def test_unknown_and_odd_methods(self):
        for m in ['FROB', 'PROPFIND', 'MKCOL', 'get', 'X' * 200]:
            r, data = self.req(m, '/index.html')
            self.assertIn(r.status, (405, 501), m)
            self.assertNotIn(b'<title>ok', data, m)
            self.assert_isolated(r, m)
        for m in ['TRACE', 'CONNECT', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']:
            r, data = self.req(m, '/index.html')
            self.assertEqual(r.status, 405, m)
            self.assert_isolated(r, m)

    def test_malformed_and_oversized_requests(self):
        cases = [b'GET /../secret.txt\r\n\r\n', b'GET\r\n\r\n', b'POST /\r\n\r\n', b'GET / HTTP/9.9\r\n\r\n', b'GET / FOO/1.1\r\n\r\n', b'\x16\x03\x01\x02\x00\r\n\r\n',
                 b'GET /' + b'a' * 70000 + b' HTTP/1.1\r\n\r\n',
                 b'GET / HTTP/1.1\r\n' + b''.join(b'X-%d: y\r\n' % i for i in range(200)) + b'\r\n']
        for data in cases:
            status, headers, body = raw_request(self.host, self.port, data)
            self.assertRegex(status, r'^HTTP/1\.[01] (400|403|404|414|431|505) ', data[:40])
            self.assert_isolated(headers, data[:40])
        # The server is still up and serving after all of that.
        r, data = self.req('GET', '/')
        self.assertEqual(r.status, 200)

    def test_error_responses_carry_headers(self):
        for method, path, status in [('GET', '/missing', 404), ('HEAD', '/missing', 404), ('HEAD', '/../x', 403),
                                     ('GET', '/sub', 301), ('DELETE', '/', 405)]:
            r, data = self.req(method, path)
            self.assertEqual(r.status, status, (method, path))
            self.assert_isolated(r, f'{method} {path}')
            if method == 'HEAD':
                self.assertEqual(data, b'')

    def test_loopback_only_by_default(self):
        self.assertEqual(self.host, '127.0.0.1')
        ip = non_loopback_ipv4()
        if ip is None:
            self.skipTest('no non-loopback address on this machine')
        with self.assertRaises(OSError):  # connection refused: nothing listens there
            socket.create_connection((ip, self.port), timeout=3).close()

    def test_host_when_told(self):
        ip = non_loopback_ipv4()
        if ip is None:
            self.skipTest('no non-loopback address on this machine')
        proc, host, port = start_server(self.root, '--host', '0.0.0.0')
        try:
            self.assertEqual(host, '0.0.0.0')
            c = http.client.HTTPConnection(ip, port, timeout=10)
            c.request('GET', '/')
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            self.assert_isolated(r, 'GET / on 0.0.0.0')
            c.close()
        finally:
            stop_server(proc)


if __name__ == '__main__':
    result = unittest.main(exit=False, verbosity=1).result
    n = result.testsRun
    bad = len(result.failures) + len(result.errors)
    print(f'serve-hardening: {n - bad} passed, {bad} failed')
    sys.exit(1 if bad else 0)
