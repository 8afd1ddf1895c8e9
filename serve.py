#!/usr/bin/env python3
"""Serves the browser app (build-web/www by default) with the headers WebAssembly threads need.

    python3 serve.py                       # http://127.0.0.1:8000/
    python3 serve.py --port 0 --root DIR   # port 0: any free port; the first line printed names it
    python3 serve.py --no-isolation        # without COOP/COEP: how a host that cannot set them serves the
                                           # app (it runs its single-threaded build); for tests

Every response, errors included, carries Cross-Origin-Opener-Policy: same-origin and
Cross-Origin-Embedder-Policy: require-corp (so the page is crossOriginIsolated and SharedArrayBuffer exists)
and Cross-Origin-Resource-Policy: same-origin. Only GET and HEAD are served; only files under the root are
served: '..' (also percent-encoded), absolute paths and symlinks that lead outside the root are refused.
Python standard library only.
"""
import argparse
import http.server
import os
import sys
import urllib.parse

ISOLATION_HEADERS = {
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Embedder-Policy': 'require-corp',
    'Cross-Origin-Resource-Policy': 'same-origin',
    'X-Content-Type-Options': 'nosniff',
}

MIME = {
    '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript',
    '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.wasm': 'application/wasm',
    '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.gif': 'image/gif', '.bmp': 'image/bmp',
    '.svg': 'image/svg+xml', '.ico': 'image/x-icon', '.txt': 'text/plain; charset=utf-8',
    '.safetensors': 'application/octet-stream', '.bin': 'application/octet-stream',
}


def resolve(root, url_path):
    """The real path of the file that url_path names under root, or None when it would leave the root."""
    path = urllib.parse.urlsplit(url_path).path
    path = urllib.parse.unquote(path, errors='strict')
    if '\x00' in path or '\\' in path:
        return None
    parts = [p for p in path.split('/') if p not in ('', '.')]
    if any(p == '..' for p in parts):
        return None
    candidate = os.path.join(root, *parts) if parts else root
    real = os.path.realpath(candidate)
    if real != root and not real.startswith(root + os.sep):
        return None  # a symlink that leads outside the root
    return real


class Handler(http.server.SimpleHTTPRequestHandler):
    server_version = 'igpt-serve/1'
    default_request_version = 'HTTP/1.0'  # errors found before the version is parsed get a status line + headers
    extensions_map = MIME

    def end_headers(self):
        for k, v in ISOLATION_HEADERS.items():
            if self.server.isolate or not k.startswith(('Cross-Origin-Opener', 'Cross-Origin-Embedder')):
                self.send_header(k, v)
        self.send_header('Cache-Control', 'no-cache')  # revalidate: rebuilt files show up at once
        super().end_headers()

    def translate_path(self, path):
        real = resolve(self.server.root, path)
        return real if real is not None else os.path.join(self.server.root, '\x00refused')

    def send_head(self):
        try:
            real = resolve(self.server.root, self.path)
        except UnicodeDecodeError:
            real = None
        if real is None:
            self.send_error(403, 'Path outside the served folder')
            return None
        if os.path.isdir(real):
            index = os.path.join(real, 'index.html')
            if not os.path.isfile(index):
                self.send_error(404, 'Not found')
                return None
            if not urllib.parse.urlsplit(self.path).path.endswith('/'):
                self.send_response(301)
                self.send_header('Location', urllib.parse.urlsplit(self.path).path + '/')
                self.send_header('Content-Length', '0')
                self.end_headers()
                return None
        return super().send_head()

    def list_directory(self, path):
        self.send_error(404, 'Not found')
        return None

    def guess_type(self, path):
        return MIME.get(os.path.splitext(path)[1].lower(), 'application/octet-stream')

    def _not_allowed(self):
        self.send_response(405, 'Method Not Allowed')
        self.send_header('Allow', 'GET, HEAD')
        self.send_header('Content-Type', 'text/plain; charset=utf-8')
        body = b'405: only GET and HEAD are served\n'
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    def log_message(self, fmt, *args):
        if not self.server.quiet:
            super().log_message(fmt, *args)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr, root, quiet, isolate=True):
        self.root = os.path.realpath(root)
        self.quiet = quiet
        self.isolate = isolate
        super().__init__(addr, Handler)


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--host', default='127.0.0.1', help='address to bind (default 127.0.0.1, this machine only)')
    ap.add_argument('--port', type=int, default=8000, help='port (0 = any free port; default 8000)')
    ap.add_argument('--root', default=os.path.join(here, 'build-web', 'www'), help='folder to serve')
    ap.add_argument('--quiet', action='store_true', help='do not log requests')
    ap.add_argument('--no-isolation', action='store_true',
                    help='omit Cross-Origin-Opener-Policy and -Embedder-Policy (the page is then not cross-origin '
                         'isolated and runs single-threaded; for testing that fallback)')
    args = ap.parse_args(argv)
    if not os.path.isdir(args.root):
        print(f'serve.py: {args.root} is not a folder (build the app first: scripts/build_web.sh)', file=sys.stderr)
        return 1
    srv = Server((args.host, args.port), args.root, args.quiet, isolate=not args.no_isolation)
    host, port = srv.server_address[:2]
    print(f'serving {srv.root} at http://{host}:{port}/' + ('' if srv.isolate else ' (not cross-origin isolated)'),
          flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
