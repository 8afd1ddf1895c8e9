#!/usr/bin/env python3
"""serve.py: isolation headers on every response, MIME types, methods, and no path outside the root.
Plain unittest (no pytest):  python3 tests/web/test_serve.py"""
import http.client
import os
import subprocess
import sys
import tempfile
import unittest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))


class ServeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        base = cls.tmp.name
        root = os.path.join(base, 'www')
        os.makedirs(os.path.join(root, 'sub'))
        os.makedirs(os.path.join(root, 'noindex'))
        with open(os.path.join(root, 'index.html'), 'w') as f:
            f.write('<!doctype html><title>ok</title>')
        with open(os.path.join(root, 'app.wasm'), 'wb') as f:
            f.write(b'\0asm\1\0\0\0')
        with open(os.path.join(root, 'app.js'), 'w') as f:
            f.write('1;')
        with open(os.path.join(root, 'sub', 'index.html'), 'w') as f:
            f.write('sub')
        with open(os.path.join(base, 'secret.txt'), 'w') as f:
            f.write('SECRET')
        os.symlink(os.path.join(base, 'secret.txt'), os.path.join(root, 'escape.txt'))
        os.symlink(os.path.join(root, 'app.js'), os.path.join(root, 'inside.js'))
        cls.proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'serve.py'), '--port', '0', '--root', root,
                                     '--quiet'], stdout=subprocess.PIPE, text=True)
        line = cls.proc.stdout.readline()
        assert line.startswith('serving '), line
        hostport = line.strip().rsplit('http://', 1)[1].rstrip('/')
        cls.host, cls.port = hostport.rsplit(':', 1)
        assert cls.host == '127.0.0.1', 'binds loopback by default'

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(10)
        cls.proc.stdout.close()
        cls.tmp.cleanup()

    def req(self, method, path, body=None):
        c = http.client.HTTPConnection(self.host, int(self.port), timeout=10)
        c.putrequest(method, path, skip_accept_encoding=True)  # path sent as is, not normalised
        if body is not None:
            c.putheader('Content-Length', str(len(body)))
        c.endheaders()
        if body is not None:
            c.send(body)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r, data

    def assert_isolated(self, r):
        self.assertEqual(r.getheader('Cross-Origin-Opener-Policy'), 'same-origin')
        self.assertEqual(r.getheader('Cross-Origin-Embedder-Policy'), 'require-corp')
        self.assertEqual(r.getheader('Cross-Origin-Resource-Policy'), 'same-origin')

    def test_index_and_headers(self):
        r, data = self.req('GET', '/')
        self.assertEqual(r.status, 200)
        self.assertIn(b'ok', data)
        self.assertTrue(r.getheader('Content-Type').startswith('text/html'))
        self.assert_isolated(r)

    def test_mime_types(self):
        r, _ = self.req('GET', '/app.wasm')
        self.assertEqual((r.status, r.getheader('Content-Type')), (200, 'application/wasm'))
        r, _ = self.req('GET', '/app.js?v=1')
        self.assertEqual(r.status, 200)
        self.assertTrue(r.getheader('Content-Type').startswith('text/javascript'))

    def test_head(self):
        r, data = self.req('HEAD', '/app.wasm')
        self.assertEqual(r.status, 200)
        self.assertEqual(data, b'')
        self.assertEqual(r.getheader('Content-Length'), '8')
        self.assert_isolated(r)

    def test_errors_carry_headers(self):
        r, _ = self.req('GET', '/missing.txt')
        self.assertEqual(r.status, 404)
        self.assert_isolated(r)
        r, _ = self.req('GET', '/noindex/')
        self.assertEqual(r.status, 404)  # no directory listings
        self.assert_isolated(r)

    def test_directory_redirect(self):
        r, _ = self.req('GET', '/sub')
        self.assertEqual(r.status, 301)
        self.assertEqual(r.getheader('Location'), '/sub/')
        self.assert_isolated(r)

    def test_traversal_refused(self):
        for path in ['/../secret.txt', '/sub/../../secret.txt', '/%2e%2e/secret.txt', '/%2E%2E/secret.txt',
                     '/sub/%2e%2e/%2e%2e/secret.txt', '/..%2fsecret.txt', '/..%5csecret.txt', '//etc/passwd',
                     '/%2Fetc%2Fpasswd', '/escape.txt', '/%00', '/etc/passwd']:
            r, data = self.req('GET', path)
            self.assertIn(r.status, (400, 403, 404), path)
            self.assertNotIn(b'SECRET', data, path)
            self.assertNotIn(b'root:', data, path)
            self.assert_isolated(r)

    def test_symlink_inside_root_served(self):
        r, data = self.req('GET', '/inside.js')
        self.assertEqual((r.status, data), (200, b'1;'))

    def test_methods(self):
        for m in ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']:
            r, _ = self.req(m, '/index.html', body=b'x')
            self.assertEqual(r.status, 405, m)
            self.assertEqual(r.getheader('Allow'), 'GET, HEAD')
            self.assert_isolated(r)
        r, _ = self.req('FROB', '/index.html')
        self.assertEqual(r.status, 501)
        self.assert_isolated(r)

    def test_no_isolation_flag(self):
        # --no-isolation: no COOP/COEP (the page is not cross-origin isolated: the app's single-threaded
        # build), everything else as usual; the first line says so.
        proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'serve.py'), '--port', '0', '--root',
                                 os.path.join(self.tmp.name, 'www'), '--quiet', '--no-isolation'],
                                stdout=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            self.assertIn('not cross-origin isolated', line)
            host, port = line.split('http://', 1)[1].split('/', 1)[0].rsplit(':', 1)
            c = http.client.HTTPConnection(host, int(port), timeout=10)
            c.request('GET', '/')
            r = c.getresponse()
            r.read()
            c.close()
            self.assertEqual(r.status, 200)
            self.assertIsNone(r.getheader('Cross-Origin-Opener-Policy'))
            self.assertIsNone(r.getheader('Cross-Origin-Embedder-Policy'))
            self.assertEqual(r.getheader('X-Content-Type-Options'), 'nosniff')
        finally:
            proc.terminate()
            proc.wait(10)
            proc.stdout.close()


if __name__ == '__main__':
    result = unittest.main(exit=False, verbosity=1).result
    n = result.testsRun
    bad = len(result.failures) + len(result.errors)
    print(f'serve: {n - bad} passed, {bad} failed')
    sys.exit(1 if bad else 0)
