"""Stand-in for examples/demo_app (used only while that directory does not exist).

Same contract: `python3 /app/app.py`, env DATABASE_URL and PORT; GET /healthz -> 200 without the DB,
/readyz checks the DB, /alloc?mb=N allocates memory and keeps it, /slow?ms=N sleeps.
"""
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

HELD = []


class Handler(BaseHTTPRequestHandler):
    def _send(self, code, body):
        data = (body + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        q = parse_qs(url.query)
        if url.path == "/healthz":
            return self._send(200, "ok")
        if url.path == "/readyz":
            dsn = os.environ.get("DATABASE_URL")
            if not dsn:
                return self._send(503, "no DATABASE_URL")
            try:
                import psycopg

                with psycopg.connect(dsn, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return self._send(200, "ready")
            except Exception as e:  # noqa: BLE001
                return self._send(503, f"db: {e}")
        if url.path == "/alloc":
            mb = int(q.get("mb", ["0"])[0])
            HELD.append(bytearray(b"x" * (mb << 20)))
            return self._send(200, f"holding {sum(len(b) for b in HELD) >> 20} MiB")
        if url.path == "/slow":
            time.sleep(int(q.get("ms", ["0"])[0]) / 1000)
            return self._send(200, "slow")
        return self._send(404, "not found")

    def log_message(self, fmt, *args):
        print("%s %s" % (self.address_string(), fmt % args), flush=True)


if __name__ == "__main__":
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    print(f"stand-in demo app listening on {host}:{port}", flush=True)
    ThreadingHTTPServer((host, port), Handler).serve_forever()
