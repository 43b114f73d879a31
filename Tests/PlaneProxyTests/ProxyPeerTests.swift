import Foundation
import Logging
import PlaneCore
import PlaneProxy
import PlaneTestSupport
import Testing

/// The proxy with real third-party peers (Python, from a venv the setup makes): a
/// `websockets` client over TLS (spec §11.5 `simple_ws_backend_proxy`), python-socketio
/// server and client through the proxy with every transport and with path routing (a
/// Plane user's socket.io app failed behind v0.3.10), and 1,000 concurrent WebSockets.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ProxyPeerTests {
    static let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("python").path

    /// Runs a Python script of `python/` to completion (off the cooperative pool).
    func python(_ script: String, _ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await SystemProgram.run(executable: try await PythonEnvironment.python(), ["\(Self.scripts)/\(script)"] + arguments)
    }

    struct Bed {
        let proxy: ProxyServer
        let port: Int
        let ca: String?
        let children: [ChildProcess]

        func stop() async {
            await proxy.stop()
            for child in children { await child.stop() }
        }
    }

    /// A proxy (TLS with a `*.plane.test` certificate when `tls`) routing `foobar` to `upstreamPort`.
    func bed(upstreamPort: Int, tls: Bool, children: [ChildProcess], adjust: (inout ProxyConfiguration) -> Void = { _ in }) async throws -> Bed {
        let routes = RouteTable()
        routes.add(RouteTable.Route(backendID: "foobar", address: "127.0.0.1:\(upstreamPort)", bearerToken: nil))
        var logger = Logger(label: "test.proxy")
        logger.logLevel = .warning
        var store: TLSCertificateStore?
        var ca: String?
        if tls {
            let directory = try TestEnvironment.temporaryDirectory("proxy-peer")
            let certificates = try await TestCertificates.generate(in: directory, names: ["DNS:*.plane.test", "DNS:plane.test"])
            store = TLSCertificateStore(keyPath: certificates.serverKey, certificatePath: certificates.serverCertificate, logger: logger)
            try #require(store?.reload() == nil)
            ca = certificates.caCertificate
        }
        var configuration = ProxyConfiguration()
        configuration.bindHost = "127.0.0.1"
        configuration.httpsPort = 0
        adjust(&configuration)
        let proxy = ProxyServer(cluster: "plane.test", configuration: configuration, routes: routes, certificates: store, logger: logger)
        try await proxy.start()
        return Bed(proxy: proxy, port: try #require(proxy.port), ca: ca, children: children)
    }

    func testServer() async throws -> (ChildProcess, Int) {
        let port = try TestEnvironment.freePort()
        let child = try ChildProcess(try TestExecutables.path("plane-test-server"), environment: ["PORT": String(port), "HOST": "127.0.0.1"])
        _ = try await HTTPProbe(port: port).waitUntilAnswering("/")
        return (child, port)
    }

    @Test func aWebSocketOverTLSEchoesSixMessages() async throws {
        let (server, port) = try await testServer()
        let bed = try await bed(upstreamPort: port, tls: true, children: [server])
        let result = try await python("ws_peer.py", ["echo", "--url", "wss://foobar.plane.test:\(bed.port)/", "--port", String(bed.port),
                                                     "--ca", try #require(bed.ca), "--messages", "6"])
        #expect(result.status == 0 && result.output.contains("ok 6"), "\(result.output)")
        await bed.stop()
    }

    @Test func socketIOWorksThroughTheProxyWithEveryTransportAndPathRouting() async throws {
        let port = try TestEnvironment.freePort()
        let server = try ChildProcess(try await PythonEnvironment.python(), arguments: ["\(Self.scripts)/socketio_server.py", String(port)])
        #expect(try await eventually { server.output.contains("listening") || !server.isRunning }, "\(server.output)")
        let bed = try await bed(upstreamPort: port, tls: true, children: [server]) { $0.allowPathRouting = true }
        let ca = try #require(bed.ca)
        let host = "https://foobar.plane.test:\(bed.port)"
        // Polling handshake, then the upgrade to WebSocket, then an acknowledged event.
        let upgraded = try await python("socketio_client.py", ["--url", host, "--ca", ca])
        #expect(upgraded.status == 0 && upgraded.output.contains("ok websocket websocket"), "\(upgraded.output)")
        let polling = try await python("socketio_client.py", ["--url", host, "--ca", ca, "--transports", "polling"])
        #expect(polling.status == 0 && polling.output.contains("ok polling polling"), "\(polling.output)")
        let websocket = try await python("socketio_client.py", ["--url", host, "--ca", ca, "--transports", "websocket"])
        #expect(websocket.status == 0 && websocket.output.contains("ok websocket websocket"), "\(websocket.output)")
        // Path routing, as that user addressed backends: /_plane_backend=foobar/socket.io/.
        let pathRouted = try await python("socketio_client.py", ["--url", "https://plane.test:\(bed.port)", "--path", "/_plane_backend=foobar/socket.io",
                                                                 "--ca", ca])
        #expect(pathRouted.status == 0 && pathRouted.output.contains("ok websocket websocket"), "\(pathRouted.output)")
        await bed.stop()
    }

    @Test func aThousandConcurrentWebSocketsEachEchoAHundredMessages() async throws {
        let (server, port) = try await testServer()
        let bed = try await bed(upstreamPort: port, tls: false, children: [server])
        let result = try await python("ws_peer.py", ["load", "--url", "ws://foobar.plane.test:\(bed.port)/", "--port", String(bed.port),
                                                     "--connections", "1000", "--messages", "100"])
        #expect(result.status == 0 && result.output.contains("ok connections=1000 peak_open=1000 echoed=100000"), "\(result.output)")
        #expect(try await eventually { bed.proxy.metrics.openUpgradedConnections == 0 })
        await bed.stop()
    }

    @Test func anUpgradedConnectionCarriesAHalfClose() async throws {
        let port = try TestEnvironment.freePort()
        let server = try ChildProcess(try await PythonEnvironment.python(), arguments: ["\(Self.scripts)/half_close.py", "server", String(port)])
        #expect(try await eventually { server.output.contains("listening") || !server.isRunning }, "\(server.output)")
        let bed = try await bed(upstreamPort: port, tls: false, children: [server])
        // The client stops sending; the backend sees the end of input, answers, and closes.
        let result = try await python("half_close.py", ["client", String(bed.port), "foobar.plane.test"])
        #expect(result.status == 0 && result.output.contains("got:hello"), "\(result.output)")
        await bed.stop()
    }
}
