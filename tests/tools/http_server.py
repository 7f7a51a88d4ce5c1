#!/usr/bin/env python3
"""Local HTTP server for download_test: serves --dir on 127.0.0.1, prints "PORT <n>" once listening.

Routes (NAME is a plain file name inside --dir):
  /files/NAME           the file, honouring "Range: bytes=START-[END]" (206 + Content-Range, 416 past the end)
  /redirect/NAME        302 to /files/NAME
  /redirect-host/NAME   302 to http://localhost:<port>/auth/NAME (another host name, same server)
  /drop/N/NAME          like /files, but closes the connection after N body bytes
  /norange/NAME         ignores Range: always 200 with the whole file
  /badrange/NAME        answers a Range request with 206 and the whole file ("bytes 0-...")
  /auth/NAME            like /files, but 401 unless "Authorization: Bearer <--token>"
  /linked/SHA/NAME      302 to /files/NAME with the header X-Linked-ETag: "SHA", as the Hugging Face
                        Hub's resolve URLs announce an LFS file's SHA-256
  anything else         404
Query strings are ignored. The server exits after --timeout seconds, and on stdin EOF with
--exit-on-stdin-eof (the test's end of a pipe closes when the test dies), so it never outlives a test.
"""
import argparse
import http.server
import os
import re
import sys
import threading
import urllib.parse


def make_handler(root, token):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # keep test output clean
            pass

        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path
            parts = path.strip("/").split("/")
            route, name = parts[0], parts[-1]
            if route == "drop" and len(parts) == 3 and parts[1].isdigit():
                return self.send_file(name, drop_after=int(parts[1]))
            if route == "linked" and len(parts) == 3:
                return self.send_status(302, [("Location", "/files/" + name), ("X-Linked-ETag", '"%s"' % parts[1])])
            if len(parts) != 2:
                return self.send_status(404)
            if route == "files":
                return self.send_file(name)
            if route == "redirect":
                return self.redirect("/files/" + name)
            if route == "redirect-host":
                return self.redirect("http://localhost:%d/auth/%s" % (self.server.server_address[1], name))
            if route == "norange":
                return self.send_file(name, honour_range=False)
            if route == "badrange":
                return self.send_file(name, bad_range=True)
            if route == "auth":
                if self.headers.get("Authorization") != "Bearer " + token:
                    return self.send_status(401)
                return self.send_file(name)
            return self.send_status(404)

        def send_status(self, code, extra=()):
            body = b"%d\n" % code
            self.send_response(code)
            for k, v in extra:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def redirect(self, location):
            self.send_status(302, [("Location", location)])

        def send_file(self, name, honour_range=True, bad_range=False, drop_after=None):
            file = os.path.join(root, name)
            if name in ("", ".", "..") or not os.path.isfile(file):
                return self.send_status(404)
            with open(file, "rb") as f:
                data = f.read()
            size = len(data)
            start, end, code = 0, size - 1, 200
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if m and bad_range:
                code = 206
            elif m and honour_range:
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                if start >= size:
                    return self.send_status(416, [("Content-Range", "bytes */%d" % size)])
                code = 206
            body = data[start:end + 1]
            self.send_response(code)
            if code == 206:
                self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if drop_after is not None:
                body = body[:drop_after]
                self.close_connection = True
            self.wfile.write(body)

    return Handler


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Clients that cancel or stop reading after an error status reset the connection.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--token", default="secret")
    ap.add_argument("--exit-on-stdin-eof", action="store_true")
    args = ap.parse_args()

    server = Server(("127.0.0.1", 0), make_handler(os.path.abspath(args.dir), args.token))
    threading.Timer(args.timeout, lambda: os._exit(0)).start()
    if args.exit_on_stdin_eof:
        def watch_stdin():
            sys.stdin.buffer.read()
            os._exit(0)
        threading.Thread(target=watch_stdin, daemon=True).start()
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
