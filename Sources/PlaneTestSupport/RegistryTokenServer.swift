import Foundation

/// A token server for `docker-registry`'s bearer-token auth, on 127.0.0.1: it checks basic
/// credentials and issues RS256 JWTs (signed with `openssl`, the certificate in `x5c`) that
/// grant every action asked for. A small Python (standard library) program the test starts.
public final class RegistryTokenServer: @unchecked Sendable {
    public let port: Int
    public let directory: String
    public let credentials: (user: String, password: String)
    public static let service = "plane-test-registry"
    public static let issuer = "plane-test-token-issuer"
    private let child: ChildProcess

    public var realm: String { "http://127.0.0.1:\(port)/token" }
    /// The certificate the registry trusts (`rootcertbundle`).
    public var certificatePath: String { "\(directory)/token.crt" }

    public static func start(credentials: (user: String, password: String)) async throws -> RegistryTokenServer {
        let directory = try TestEnvironment.temporaryDirectory("plane-token-server")
        let openssl = try SystemProgram.openssl.path()
        _ = try await SystemProgram.run(executable: openssl, ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(directory)/token.key",
                                                          "-out", "\(directory)/token.crt", "-subj", "/CN=plane-test-token", "-days", "2"])
        guard FileManager.default.fileExists(atPath: "\(directory)/token.crt") else { throw TestSupportError("openssl made no token certificate") }
        try script.write(toFile: "\(directory)/token_server.py", atomically: true, encoding: .utf8)
        let port = try TestEnvironment.freePort()
        let python = try SystemProgram("python3", debianPackage: "python3").path()
        let child = try ChildProcess.watched(python, arguments: [
            "\(directory)/token_server.py", String(port), "\(directory)/token.key", "\(directory)/token.crt", credentials.user, credentials.password,
            service, issuer, openssl,
        ])
        let server = RegistryTokenServer(port: port, directory: directory, credentials: credentials, child: child)
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let status = try? await HTTPProbe(port: port).get("/health").status, status == 200 { return server }
            guard child.isRunning else { throw TestSupportError("the token server exited: \(child.output)") }
            try await Task.sleep(for: .milliseconds(50))
        }
        await server.stop()
        throw TestSupportError("the token server on port \(port) did not become ready: \(child.output)")
    }

    private init(port: Int, directory: String, credentials: (user: String, password: String), child: ChildProcess) {
        self.port = port
        self.directory = directory
        self.credentials = credentials
        self.child = child
    }

    public func stop() async {
        await child.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    static let script = #"""
        import base64, datetime, json, os, subprocess, sys, time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlparse, parse_qs

        port, key, cert, user, password, service, issuer, openssl = sys.argv[1:9]

        def b64(data):
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        with open(cert) as f:
            pem = f.read()
        der = base64.b64decode("".join(line for line in pem.splitlines() if "-----" not in line))

        def token(subject, access):
            now = int(time.time())
            header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
            claims = {"iss": issuer, "sub": subject, "aud": service, "exp": now + 300, "nbf": now - 10, "iat": now,
                      "jti": b64(os.urandom(12)), "access": access}
            signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
            signature = subprocess.run([openssl, "dgst", "-sha256", "-sign", key], input=signing_input.encode(),
                                       capture_output=True, check=True).stdout
            return signing_input + "." + b64(signature)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urlparse(self.path)
                if url.path == "/health":
                    return self.answer(200, {"ok": True})
                if url.path != "/token":
                    return self.answer(404, {"details": "not found"})
                authorization = self.headers.get("Authorization", "")
                given = None
                if authorization.startswith("Basic "):
                    try:
                        given = base64.b64decode(authorization[6:]).decode().split(":", 1)
                    except Exception:
                        given = None
                if given != [user, password]:
                    return self.answer(401, {"details": "incorrect username or password"})
                access = []
                for scope in parse_qs(url.query).get("scope", []):
                    parts = scope.split(":")
                    if len(parts) >= 3:
                        access.append({"type": parts[0], "name": ":".join(parts[1:-1]), "actions": parts[-1].split(",")})
                issued = token(user, access)
                self.answer(200, {"token": issued, "access_token": issued, "expires_in": 300,
                                  "issued_at": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")})

        ThreadingHTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()
        """#
}
