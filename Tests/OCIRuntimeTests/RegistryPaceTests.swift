import AsyncHTTPClient
import ContainerRuntime
import Foundation
import Logging
@testable import OCIRuntime
import PlaneTestSupport
import Testing

/// A registry that sends a byte now and then never trips the HTTP client's read timeout; the
/// pull's pace check (`[agent.oci] pull_min_bytes_per_sec` over `pull_slow_secs`) cuts it, for
/// the pull that started the download and for every pull waiting on the same blob.
@Suite(.timeLimit(.minutes(3)))
struct RegistryPaceTests {
    /// Serves one image on 127.0.0.1: its manifest, configuration and a 64 KiB layer, the
    /// part named by `slow` ("manifest" or "layer") a byte every 200 ms.
    final class TricklingRegistry: Sendable {
        let port: Int
        let child: ChildProcess

        init(slow: String) async throws {
            let directory = try TestEnvironment.temporaryDirectory("trickling-registry")
            port = try TestEnvironment.freePort()
            try Self.script.write(toFile: directory + "/registry.py", atomically: true, encoding: .utf8)
            let python = try SystemProgram("python3", debianPackage: "python3").path()
            child = try ChildProcess.watched(python, arguments: [directory + "/registry.py", String(port), slow])
            let deadline = ContinuousClock.now + .seconds(20)
            while (try? await HTTPProbe(port: port).get("/health").status) != 200 {
                guard ContinuousClock.now < deadline, child.isRunning else { throw TestSupportError("the trickling registry did not start: \(child.output)") }
                try await Task.sleep(for: .milliseconds(50))
            }
        }

        func stop() async { await child.stop() }

        static let script = #"""
            import hashlib, http.server, json, os, sys, time
            port, slow = int(sys.argv[1]), sys.argv[2]
            layer = os.urandom(64 * 1024)
            layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
            config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                                 "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
            config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
            manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": len(layer)}]}).encode()

            class Handler(http.server.BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"
                def log_message(self, *args): pass
                def send(self, data, content_type, trickle):
                    self.send_response(200)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    try:
                        if not trickle:
                            self.wfile.write(data)
                            return
                        for index in range(len(data)):
                            self.wfile.write(data[index:index + 1])
                            self.wfile.flush()
                            time.sleep(0.2)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                def do_GET(self):
                    if self.path == "/health":
                        return self.send(b"{}", "application/json", False)
                    if self.path.endswith("/manifests/latest"):
                        return self.send(manifest, "application/vnd.oci.image.manifest.v1+json", slow == "manifest")
                    if self.path.endswith("/blobs/" + config_digest):
                        return self.send(config, "application/octet-stream", False)
                    if self.path.endswith("/blobs/" + layer_digest):
                        return self.send(layer, "application/octet-stream", slow == "layer")
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
            """#
    }

    func pull(_ store: OCIContentStore, from registry: TricklingRegistry) async -> RuntimeError? {
        do {
            _ = try await store.pull(try OCIImageReference("127.0.0.1:\(registry.port)/team/slow:latest"), credentials: nil, policy: .always)
            return nil
        } catch {
            return error
        }
    }

    func store(for registry: TricklingRegistry, pace: TransferPace) throws -> OCIContentStore {
        var logger = Logger(label: "test.oci")
        logger.logLevel = .critical
        let client = RegistryClient(insecureRegistries: ["127.0.0.1:\(registry.port)"], client: HTTPClient.shared, logger: logger, pace: pace)
        return try OCIContentStore(root: try TestEnvironment.temporaryDirectory("oci-store"), registry: client, logger: logger)
    }

    /// At least 1 KiB/s over each second: a byte every 200 ms is far below.
    static let pace = TransferPace(minimumBytesPerSecond: 1024, window: .seconds(1))

    @Test(arguments: ["layer", "manifest"])
    func aTricklingRegistryIsCutAndThePullFails(slow: String) async throws {
        let registry = try await TricklingRegistry(slow: slow)
        defer { Task { await registry.stop() } }
        let store = try store(for: registry, pace: Self.pace)
        // Two pulls of the image at once: the second waits on the first's download of the
        // blob, and must not wait forever either.
        let started = ContinuousClock.now
        async let first = pull(store, from: registry)
        async let second = pull(store, from: registry)
        let errors = await [first, second]
        for error in errors {
            #expect(error?.code == .imageUnavailable, "\(String(describing: error))")
            #expect(error?.limit == "agent.oci.pull_min_bytes_per_sec", "\(String(describing: error))")
            #expect(error?.message.contains("slower than 1024 bytes/s") == true, "\(String(describing: error))")
        }
        // The whole 64 KiB layer would take 3.6 hours at this rate.
        #expect(ContinuousClock.now - started < .seconds(60))
    }

    @Test func aSteadyTransferKeepsThePace() {
        let start = ContinuousClock.now
        var meter = TransferPace.Meter(TransferPace(minimumBytesPerSecond: 100, window: .seconds(10)), now: start)
        // 1000 bytes a second, in bursts: never short.
        for second in 1...30 {
            #expect(meter.arrived(1000, at: start + .seconds(second)) == nil)
        }
        // A window of 10 s with 999 bytes (100 bytes/s needs 1000) falls short.
        #expect(meter.arrived(999, at: start + .seconds(40)).map { $0.bytes == 999 && $0.seconds == 10 } == true)
        // Off at 0 bytes per second.
        var off = TransferPace.Meter(TransferPace(minimumBytesPerSecond: 0, window: .seconds(1)), now: start)
        #expect(off.arrived(1, at: start + .seconds(3600)) == nil)
        // No overflow at the extremes.
        var extreme = TransferPace.Meter(TransferPace(minimumBytesPerSecond: 1 << 40, window: .seconds(1)), now: start)
        #expect(extreme.arrived(Int.max, at: start + .seconds(1)) == nil)
        #expect(extreme.arrived(1, at: start + .seconds(Int64(1) << 40)) != nil)
        #expect(TransferPace.Meter.milliseconds(.seconds(Int64.max)) == Int64.max && TransferPace.Meter.milliseconds(.seconds(-5)) == 0)
    }
}
