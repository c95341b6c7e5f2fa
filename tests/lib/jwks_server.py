"""A JWK set over HTTPS, as an identity provider serves one: GET any path returns the file named
on the command line, read again on every request (so a test rotates keys by rewriting it).
Each request is appended to --log. Prints "jwks-server listening on 127.0.0.1:PORT" when ready.

    jwks_server.py --cert C --key K --file jwks.json --log requests.log
"""
import argparse
import http.server
import ssl
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            with open(a.log, "a") as f:
                f.write(self.path + "\n")
            try:
                with open(a.file, "rb") as f:
                    body = f.read()
                self.send_response(200)
            except OSError:
                body = b"{}"
                self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("jwks-server listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
