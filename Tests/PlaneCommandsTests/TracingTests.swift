import Foundation
import NATS
import PlaneCore
import PlaneMessaging
import PlaneTestSupport
import Testing

/// A spawn traced end to end (issue 16), with real processes: a client's schedule request
/// that carries a W3C `traceparent` header goes to `plane controller`, which places it on
/// `plane drone` (process plugin), which starts it; both export their spans over OTLP/HTTP
/// (JSON) to a collector the test runs. Every span of the spawn is in the client's trace,
/// each the child of the one before: schedule → spawn request → the drone's spawn → the
/// runtime's calls. Without `[tracing]` a request carries no trace headers.
struct TracingTests {
    /// An OTLP/HTTP collector: a Python server that appends each POSTed body to a file.
    static let collector = """
        import http.server, sys
        out = sys.argv[2]
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get('Content-Length', '0')))
                with open(out, 'ab') as f:
                    f.write(body.replace(b'\\n', b' ') + b'\\n')
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', '2')
                self.end_headers()
                self.wfile.write(b'{}')
            def log_message(self, *args):
                pass
        http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), Handler).serve_forever()
        """

    struct Span: Hashable {
        var service: String
        var name: String
        var traceID: String
        var spanID: String
        var parentID: String
    }

    /// OTLP's JSON ids are hex; a protobuf JSON mapping would give base64: both are read.
    static func hex(_ text: String) -> String {
        if text.count == 32 || text.count == 16, text.allSatisfy(\.isHexDigit) { return text.lowercased() }
        guard let data = Data(base64Encoded: text) else { return text }
        return data.map { String(format: "%02x", $0) }.joined()
    }

    static func spans(in file: String) -> [Span] {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return [] }
        var spans: [Span] = []
        for line in text.split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
            for resourceSpans in object["resourceSpans"] as? [[String: Any]] ?? [] {
                let attributes = (resourceSpans["resource"] as? [String: Any])?["attributes"] as? [[String: Any]] ?? []
                let service = attributes.first { $0["key"] as? String == "service.name" }
                    .flatMap { ($0["value"] as? [String: Any])?["stringValue"] as? String } ?? ""
                for scope in resourceSpans["scopeSpans"] as? [[String: Any]] ?? [] {
                    for span in scope["spans"] as? [[String: Any]] ?? [] {
                        spans.append(Span(service: service, name: span["name"] as? String ?? "", traceID: hex(span["traceId"] as? String ?? ""),
                                          spanID: hex(span["spanId"] as? String ?? ""), parentID: hex(span["parentSpanId"] as? String ?? "")))
                    }
                }
            }
        }
        return spans
    }

    @Test(.timeLimit(.minutes(3))) func aSpawnIsOneTraceFromTheClientToTheRuntime() async throws {
        try await withNATSServer { server in
            let directory = try TestEnvironment.temporaryDirectory("tracing")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let collectorPort = try TestEnvironment.freePort()
            let received = directory + "/spans.jsonl"
            let collector = try ChildProcess("/usr/bin/python3", arguments: ["-c", Self.collector, String(collectorPort), received])
            defer { collector.signal(SIGKILL) }
            let tracing = """
                [tracing]
                endpoint = "http://127.0.0.1:\(collectorPort)/v1/traces"
                protocol = "http/json"
                export_delay_ms = 200
                """
            try "[nats]\nhosts = [\"\(server.url)\"]\n[scheduler]\n\(tracing)\n".write(toFile: directory + "/controller.toml", atomically: true, encoding: .utf8)
            let plane = try TestExecutables.path("plane")
            let controller = try ChildProcess(plane, arguments: ["controller", directory + "/controller.toml"])
            defer { controller.signal(SIGKILL) }
            let drone = DroneID.random()
            let config = try DroneConfigFile.write(in: directory, drone: drone.rawValue, nats: server.url, ports: "25700-25799", extra: """
                runtime = "process"
                runtimes_dir = "\(PythonEnvironment.packageRoot)/runtimes"
                drain_on_shutdown = true
                \(tracing)
                """)
            let droneProcess = try ChildProcess(plane, arguments: ["drone", config])
            defer { droneProcess.signal(SIGKILL) }

            // The client's own span: its id is the parent of the controller's first span.
            let traceID = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
            let clientSpan = (0..<8).map { _ in String(format: "%02x", UInt8.random(in: 1...255)) }.joined()
            var headers = NATSHeaders()
            headers.append("traceparent", "00-\(traceID)-\(clientSpan)-01")
            let client = try await server.connectedClient()
            let request = ScheduleRequest(cluster: "plane.test", maxIdleSeconds: 30,
                                          executable: DockerExecutableConfig(image: try TestExecutables.path("plane-test-server")))
            var backend: BackendID?
            #expect(try await eventually(timeout: .seconds(60)) {
                guard let reply = try? await client.request(PlaneSubjects.schedule("plane.test").subject, payload: try WireEncoder().encode(request),
                                                            headers: headers, timeout: .seconds(5)),
                      case .scheduled(let scheduled)? = try? WireDecoder().decode(ScheduleResponse.self, from: reply.payload.readableBytesView) else { return false }
                backend = scheduled.backendID
                return true
            }, "controller: \(controller.output.suffix(1500))\ndrone: \(droneProcess.output.suffix(1500))")
            try #require(backend != nil)

            // Every span of the spawn arrives, in the client's trace, each under the one before.
            var trace: [Span] = []
            let names = ["plane.schedule", "plane.spawn_request", "plane.drone.spawn", "plane.runtime.prepare", "plane.runtime.start"]
            let complete = try await eventually(timeout: .seconds(60)) {
                trace = Self.spans(in: received).filter { $0.traceID == traceID }
                return Set(names).isSubset(of: Set(trace.map(\.name)))
            }
            #expect(complete, "spans of the trace: \(trace.map(\.name))\nall: \(Self.spans(in: received).prefix(20))\ncontroller: \(controller.output.suffix(1500))\ndrone: \(droneProcess.output.suffix(1500))")
            // Each attempt of the client (the first may find no drone yet) is a schedule span
            // of the trace; the chain is followed from the drone's span upwards.
            func span(id: String) -> Span? { trace.first { $0.spanID == id } }
            let droneSpan = trace.first { $0.name == "plane.drone.spawn" }
            let spawnRequest = droneSpan.flatMap { span(id: $0.parentID) }
            let schedule = spawnRequest.flatMap { span(id: $0.parentID) }
            #expect(droneSpan?.service == "plane-drone" && spawnRequest?.name == "plane.spawn_request" && spawnRequest?.service == "plane-controller", "\(trace)")
            #expect(schedule?.name == "plane.schedule" && schedule?.parentID == clientSpan && schedule?.service == "plane-controller", "\(trace)")
            let runtimeCalls = trace.filter { $0.name.hasPrefix("plane.runtime.") }
            #expect(runtimeCalls.count == 2 && runtimeCalls.allSatisfy { $0.parentID == droneSpan?.spanID && $0.service == "plane-drone" }, "\(trace)")

            // A request without a trace starts a trace of its own (a new id, no parent).
            let before = Set(Self.spans(in: received).map(\.traceID))
            let plain = try await client.request(PlaneSubjects.schedule("plane.test").subject, payload: try WireEncoder().encode(request), timeout: .seconds(10))
            guard case .scheduled? = try? WireDecoder().decode(ScheduleResponse.self, from: plain.payload.readableBytesView) else {
                Issue.record("the second schedule failed"); return
            }
            #expect(try await eventually(timeout: .seconds(30)) {
                Self.spans(in: received).contains { $0.name == "plane.schedule" && $0.parentID.isEmpty && !before.contains($0.traceID) }
            })
            // A sender's headers are anything: a broken or hostile trace context is ignored
            // (a trace of its own), never an error or a crash.
            for value in ["00-zz", "ff-\(traceID)-\(clientSpan)-01", "00-\(String(repeating: "0", count: 32))-\(clientSpan)-01",
                          String(repeating: "a", count: 8000), "00-\(traceID)-\(clientSpan)-01-extra,\u{0}"] {
                var hostile = NATSHeaders()
                hostile.append("traceparent", value)
                hostile.append("tracestate", String(repeating: "k=v,", count: 500))
                let reply = try await client.request(PlaneSubjects.schedule("plane.test").subject, payload: try WireEncoder().encode(request), headers: hostile,
                                                     timeout: .seconds(10))
                let answer = try? WireDecoder().decode(ScheduleResponse.self, from: reply.payload.readableBytesView)
                guard case .scheduled? = answer else { Issue.record("\(value.prefix(40)): \(String(describing: answer))"); continue }
            }
            #expect(controller.isRunning && droneProcess.isRunning)
            droneProcess.signal(SIGTERM)
            controller.signal(SIGTERM)
            #expect(await droneProcess.waitForExit(timeout: .seconds(30)) != nil)
            #expect(await controller.waitForExit(timeout: .seconds(30)) != nil)
            await client.close()
        }
    }
}
