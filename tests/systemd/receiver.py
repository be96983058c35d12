"""HTTP receiver for the tests inside the systemd sandbox: logs "webhook-id path body-length" per
request to the file named by its argument; answers 410 to paths under /dead, 200 otherwise.
Requests under /signed are also written, headers and body, as JSON lines to LOG.json."""
import base64
import http.server
import json
import sys

LOG = sys.argv[1]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(LOG, "a") as f:
            f.write("%s %s %d\n" % (self.headers.get("webhook-id"), self.path, len(body)))
        if self.path.startswith("/signed"):
            with open(LOG + ".json", "a") as f:
                f.write(json.dumps({
                    "id": self.headers.get("webhook-id"),
                    "timestamp": self.headers.get("webhook-timestamp"),
                    "signature": self.headers.get("webhook-signature"),
                    "authorization": self.headers.get("authorization"),
                    "body": base64.b64encode(body).decode(),
                }) + "\n")
        code = 410 if self.path.startswith("/dead") else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", 8080), Handler).serve_forever()
