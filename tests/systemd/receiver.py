"""HTTP receiver for the tests inside the systemd sandbox: logs "webhook-id path body-length" per
request to the file named by its argument; answers 410 to paths under /dead, 200 otherwise."""
import http.server
import sys

LOG = sys.argv[1]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(LOG, "a") as f:
            f.write("%s %s %d\n" % (self.headers.get("webhook-id"), self.path, len(body)))
        code = 410 if self.path.startswith("/dead") else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", 8080), Handler).serve_forever()
