import Foundation
import Logging
import PlaneTestSupport
import Testing
@testable import PlaneACME

/// An ACME server (or anything between it and the drone) that sends its answer's body a
/// byte at a time never trips the HTTP client's read timeout; each exchange is bounded as a
/// whole, so the certificate refresher moves on (and tries again later).
@Suite(.timeLimit(.minutes(2)))
struct ACMEServerTimeTests {
    static let script = #"""
        import http.server, sys, time
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def log_message(self, *args): pass
            def do_GET(self):
                body = b"{}" if self.path == "/health" else b'{"newNonce": "http://127.0.0.1/nonce"}' + b" " * 2000
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if self.path == "/health":
                        self.wfile.write(body)
                        return
                    for index in range(len(body)):
                        self.wfile.write(body[index:index + 1])
                        self.wfile.flush()
                        time.sleep(0.3)
                except (BrokenPipeError, ConnectionResetError):
                    pass
        http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
        """#

    @Test func aServerThatTricklesItsAnswerIsCut() async throws {
        let directory = try TestEnvironment.temporaryDirectory("trickling-acme")
        let port = try TestEnvironment.freePort()
        try Self.script.write(toFile: directory + "/server.py", atomically: true, encoding: .utf8)
        let python = try SystemProgram("python3", debianPackage: "python3").path()
        let child = try ChildProcess.watched(python, arguments: [directory + "/server.py", String(port)])
        defer { Task { await child.stop() } }
        #expect(try await eventually(timeout: .seconds(20)) { (try? await HTTPProbe(port: port).get("/health").status) == 200 })
        let client = try ACMEClient(directoryURL: "http://127.0.0.1:\(port)/directory", logger: Logger(label: "test.acme"), requestTimeout: .seconds(2))
        defer { Task { await client.shutdown() } }
        let started = ContinuousClock.now
        do {
            _ = try await client.directory()
            Issue.record("a directory sent a byte every 300 ms (10 minutes in all) was read")
        } catch {
            #expect(error.code == .serverUnreachable, "\(error)")
        }
        #expect(ContinuousClock.now - started < .seconds(60))
    }
}
