"""A small notes API that does not migrate itself: Alembic did, before it started.

    python app.py --port 8000        # DATABASE_URL in the environment

POST /notes {"title": "a", "tags": ["x"]} -> 201 {"id": 1}; 409 on a duplicate title.
GET /notes -> [{"id": 1, "title": "a", "tags": ["x"]}]; GET /healthz -> 200 once the db answers.
"""

from __future__ import annotations

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg

DSN = os.environ["DATABASE_URL"]


class Notes(BaseHTTPRequestHandler):
    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        with psycopg.connect(DSN) as conn:
            if self.path == "/healthz":
                conn.execute("SELECT 1 FROM alembic_version")
                return self._send(200, {"status": "ok"})
            rows = conn.execute(
                "SELECT n.id, n.title, coalesce(array_agg(t.tag ORDER BY t.tag)"
                " FILTER (WHERE t.tag IS NOT NULL), '{}')"
                " FROM notes n LEFT JOIN tags t ON t.note_id = n.id GROUP BY n.id ORDER BY n.id"
            ).fetchall()
        self._send(200, [{"id": i, "title": title, "tags": tags} for i, title, tags in rows])

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        try:
            with psycopg.connect(DSN) as conn:
                (note_id,) = conn.execute(
                    "INSERT INTO notes(title) VALUES (%s) RETURNING id", (body["title"],)
                ).fetchone()
                for tag in body.get("tags", []):
                    conn.execute("INSERT INTO tags VALUES (%s, %s)", (note_id, tag))
        except psycopg.errors.UniqueViolation:
            return self._send(409, {"error": "duplicate title"})
        self._send(201, {"id": note_id})

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    ThreadingHTTPServer(("127.0.0.1", port), Notes).serve_forever()
