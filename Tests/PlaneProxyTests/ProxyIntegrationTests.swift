import Foundation
import Logging
import PlaneCore
import PlaneProxy
import PlaneTestSupport
import Testing

/// The proxy on loopback in front of real `plane-test-server` processes (spec §11.5's
/// plain-HTTP scenarios and the gaps fixed).
@Suite(.timeLimit(.minutes(3)))
struct ProxyIntegrationTests {
    struct Setup {
        let backend: ChildProcess
        let backendPort: Int
        let routes: RouteTable
        let proxy: ProxyServer
        let port: Int

        func probe(_ host: String = "foobar.plane.test") -> HTTPProbe {
            HTTPProbe(port: port, hostHeader: "\(host):\(port)")
        }

        func stop() async {
            await proxy.stop()
            await backend.stop()
        }
    }

    func setUp(token: String? = nil, adjust: (inout ProxyConfiguration) -> Void = { _ in }) async throws -> Setup {
        let backendPort = try TestEnvironment.freePort()
        let backend = try ChildProcess(try TestExecutables.path("plane-test-server"), environment: ["PORT": String(backendPort), "HOST": "127.0.0.1"])
        _ = try await HTTPProbe(port: backendPort).waitUntilAnswering("/")
        let routes = RouteTable()
        routes.add(RouteTable.Route(backendID: "foobar", address: "127.0.0.1:\(backendPort)", bearerToken: token))
        var configuration = ProxyConfiguration()
        configuration.bindHost = "127.0.0.1"
        configuration.httpsPort = 0
        adjust(&configuration)
        var logger = Logger(label: "test.proxy")
        logger.logLevel = .warning
        let proxy = ProxyServer(cluster: "plane.test", configuration: configuration, routes: routes, logger: logger)
        try await proxy.start()
        return Setup(backend: backend, backendPort: backendPort, routes: routes, proxy: proxy, port: try #require(proxy.port))
    }

    @Test func unknownHostsAre404AndRoutedOnesReachTheBackendWithTheirHost() async throws {
        let s = try await setUp()
        let missing = try await s.probe("nothere.plane.test").get("/")
        #expect(missing.status == 404 && missing.body.isEmpty && missing.headers["access-control-allow-origin"] == "*")
        #expect(try await s.probe("plane.test").get("/").status == 404)
        let hello = try await s.probe().get("/")
        #expect(hello.status == 200 && hello.body == "Hello World!")
        let seen = try JSONSerialization.jsonObject(with: Data(try await s.probe("FooBar.plane.test").get("/headers").body.utf8)) as? [String: String]
        #expect(seen?["host"] == "FooBar.plane.test:\(s.port)")
        #expect(seen?["x-forwarded-for"] == "127.0.0.1" && seen?["x-forwarded-proto"] == "http" && seen?["x-forwarded-host"] == "FooBar.plane.test:\(s.port)")
        #expect(s.proxy.metrics.responses(ofClass: 2) == 2 && s.proxy.metrics.responses(ofClass: 4) == 2)
        await s.stop()
    }

    /// `max_connections`: the proxy holds at most that many client connections; one more is
    /// closed as soon as it is accepted (never answered, counted), and once a holder goes a
    /// new connection is served. The open connections are a gauge.
    @Test func connectionsBeyondTheLimitAreClosedAtOnce() async throws {
        let s = try await setUp { $0.maxConnections = 2 }
        let before = LimitCounters.shared.count(ProxyServer.maxConnectionsKey)
        // Two silent clients (the header timeout is 30 s) hold both places until they close.
        var holder = s.probe()
        holder.timeout = .seconds(30)
        let first = try await holder.hold()
        let second = try await holder.hold()
        #expect(try await eventually(timeout: .seconds(30)) { PrometheusSamples(s.proxy.metrics.render()).value("plane_proxy_connections") == 2 })
        var refused = s.probe()
        refused.timeout = .seconds(20)
        let start = ContinuousClock.now
        let third = try await refused.raw("GET / HTTP/1.1\r\nHost: foobar.plane.test\r\n\r\n")
        let refusedAfter = ContinuousClock.now - start
        #expect(third.closed && third.text.isEmpty && refusedAfter < .seconds(15), "\(third) after \(refusedAfter)")
        #expect(LimitCounters.shared.count(ProxyServer.maxConnectionsKey) > before)
        first.close()
        second.close()
        let served = try await eventually(timeout: .seconds(10)) { (try? await s.probe().get("/").status) == 200 }
        #expect(served)
        #expect(try await eventually(timeout: .seconds(10)) { PrometheusSamples(s.proxy.metrics.render()).value("plane_proxy_connections") == 0 })
        await s.stop()
    }

    /// `max_connections_per_address`: one client (here 127.0.0.1) holds at most that many
    /// places; one more from it is closed at once and counted, while another client
    /// (127.0.0.2) is served.
    @Test func oneClientCannotTakeEveryPlace() async throws {
        let s = try await setUp { $0.maxConnectionsPerAddress = 3 }
        let before = LimitCounters.shared.count(ProxyServer.maxConnectionsPerAddressKey)
        let port = s.port
        let held = try await SystemProgram.offThePool { try (0..<3).map { _ in try RawTCPConnection(port: port, timeout: .seconds(20)) } }
        #expect(try await eventually(timeout: .seconds(30)) { PrometheusSamples(s.proxy.metrics.render()).value("plane_proxy_connections") == 3 })
        let (refused, served) = try await SystemProgram.offThePool {
            let refused = try RawTCPConnection(port: port, timeout: .seconds(20))
            defer { refused.close() }
            try? refused.send("GET / HTTP/1.1\r\nHost: foobar.plane.test\r\n\r\n")
            let other = try RawTCPConnection(port: port, source: "127.0.0.2", timeout: .seconds(20))
            defer { other.close() }
            try other.send("GET / HTTP/1.1\r\nHost: foobar.plane.test\r\nConnection: close\r\n\r\n")
            return (refused.readUntilClosed(), String(decoding: other.readUntilClosed().bytes, as: UTF8.self))
        }
        #expect(refused.closed && refused.bytes.isEmpty, "\(refused)")
        #expect(served.hasPrefix("HTTP/1.1 200") && served.hasSuffix("Hello World!"), "\(served)")
        #expect(LimitCounters.shared.count(ProxyServer.maxConnectionsPerAddressKey) > before)
        for connection in held { connection.close() }
        #expect(try await eventually(timeout: .seconds(10)) { (try? await s.probe().get("/").status) == 200 })
        await s.stop()
    }

    /// A new connection must bring its first request head within `header_read_timeout_secs`
    /// of opening, not the longer idle timeout of a kept-alive one: a client that connects
    /// and sends nothing gives its place back as soon as one that stalls mid-head.
    @Test func aSilentNewConnectionIsClosedByTheHeaderTimeout() async throws {
        let s = try await setUp {
            $0.headerReadTimeout = .seconds(1)
            $0.idleTimeout = .seconds(600)
        }
        let port = s.port
        let started = ContinuousClock.now
        let closed = try await SystemProgram.offThePool {
            let silent = try RawTCPConnection(port: port, timeout: .seconds(60))
            defer { silent.close() }
            return silent.readUntilClosed()
        }
        let after = ContinuousClock.now - started
        #expect(closed.closed && closed.bytes.isEmpty && after < .seconds(30), "\(closed) after \(after)")
        await s.stop()
    }

    @Test func requestsCountAsActivity() async throws {
        let s = try await setUp()
        try await Task.sleep(for: .seconds(1))
        let before = try #require(s.routes.idleTime(of: "foobar"))
        #expect(before >= .milliseconds(900))
        let sent = ContinuousClock.now
        _ = try await s.probe().get("/")
        // The request reset the idle clock: it is younger than the request itself.
        #expect(try #require(s.routes.idleTime(of: "foobar")) <= ContinuousClock.now - sent)
        await s.stop()
    }

    /// An exchange keeps its backend from being idle for as long as it is open: a response
    /// that takes longer than the idle clock runs, a slow upload, a slow client's download;
    /// the clock starts again when the exchange ends (it used to run from the request's
    /// start, so a backend was swept under a long poll).
    @Test func openExchangesKeepTheBackendBusy() async throws {
        let s = try await setUp()
        func idle() -> Duration { s.routes.idleTime(of: "foobar") ?? .seconds(999) }
        /// Once the exchange is open (idle exactly zero: activity alone is never exactly
        /// zero), every reading taken before `since + span`, when the exchange cannot have
        /// ended yet, must be zero. Time is read after each reading, so a busy machine that
        /// delays the test can only make it check less, never wrongly.
        func staysBusy(since: ContinuousClock.Instant, for span: Duration, _ what: String) async throws {
            #expect(try await eventually { idle() == .zero }, "\(what): never open")
            while true {
                let reading = idle()
                guard ContinuousClock.now - since < span else { return }
                #expect(reading == .zero, "idle while \(what)")
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        // A response that takes 3 s: it ends 3 s after it was sent at the earliest, so the
        // idle clock may have run for no longer than the time since then (if the request's
        // start counted, it would have run for longer).
        let slowSent = ContinuousClock.now
        let slow = Task { try await s.probe().get("/slow/3000") }
        try await staysBusy(since: slowSent, for: .milliseconds(3000), "a response is awaited")
        #expect(try await slow.value.body == "slept 3000 ms")
        #expect(idle() <= ContinuousClock.now - (slowSent + .milliseconds(3000)), "the idle clock starts when the exchange ends")
        // An upload sent slowly (its last piece 2.4 s after its head): open while its body arrives.
        let uploadSent = ContinuousClock.now
        let upload = Task {
            try await s.probe().raw([Array("POST /upload HTTP/1.1\r\nHost: foobar.plane.test\r\nContent-Length: 6\r\nConnection: close\r\n\r\n".utf8),
                                     Array("ab".utf8), Array("cd".utf8), Array("ef".utf8)], pause: .milliseconds(800))
        }
        try await staysBusy(since: uploadSent, for: .milliseconds(2400), "a request body is being uploaded")
        #expect(try await upload.value.text.hasSuffix("received 6"))
        #expect(idle() <= ContinuousClock.now - (uploadSent + .milliseconds(2400)))
        await s.stop()
    }

    /// A pooled connection the backend closes as the next request arrives: an idempotent
    /// request without a body is sent again on a new connection and answered; a POST, with a
    /// body or without, is not sent twice (502), and the client connection carries on.
    @Test func aStalePooledConnectionIsRetriedOnlyWhenNothingOfTheRequestWasConsumed() async throws {
        let backendPort = try TestEnvironment.freePort()
        let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("python").path
        let backend = try ChildProcess(try SystemProgram("python3", debianPackage: "python3").path(), arguments: ["\(scripts)/one_request_backend.py", String(backendPort)])
        _ = try await HTTPProbe(port: backendPort).waitUntilAnswering("/")
        let before = try JSONSerialization.jsonObject(with: Data(try await HTTPProbe(port: backendPort).get("/count").body.utf8)) as? [String: Int]
        let getsBefore = try #require(before?["GET"])
        let routes = RouteTable()
        routes.add(RouteTable.Route(backendID: "foobar", address: "127.0.0.1:\(backendPort)", bearerToken: nil))
        var configuration = ProxyConfiguration()
        configuration.bindHost = "127.0.0.1"
        configuration.httpsPort = 0
        var logger = Logger(label: "test.proxy")
        logger.logLevel = .warning
        let proxy = ProxyServer(cluster: "plane.test", configuration: configuration, routes: routes, logger: logger)
        try await proxy.start()
        let port = try #require(proxy.port)
        // One client connection (one event loop, one pool), requests one after another.
        let host = "Host: foobar.plane.test\r\n"
        let (text, closed) = try await HTTPProbe(port: port).raw([
            Array("GET /a HTTP/1.1\r\n\(host)\r\n".utf8),
            Array("GET /b HTTP/1.1\r\n\(host)\r\n".utf8),
            Array("POST /nobody HTTP/1.1\r\n\(host)Content-Length: 0\r\n\r\n".utf8),
            Array("GET /c HTTP/1.1\r\n\(host)\r\n".utf8),
            Array("POST /pay HTTP/1.1\r\n\(host)Content-Length: 1\r\n\r\nx".utf8),
            Array("GET /count HTTP/1.1\r\n\(host)Connection: close\r\n\r\n".utf8),
        ], pause: .milliseconds(300))
        let answers = text.components(separatedBy: "HTTP/1.1 ").dropFirst().map { "HTTP/1.1 " + $0 }
        try #require(answers.count == 6, "\(text)")
        // Bodies are "{backend connection} {method} {path}".
        let bodies = answers.map { $0.components(separatedBy: "\r\n\r\n").last ?? "" }
        #expect(answers[0].hasPrefix("HTTP/1.1 200 ") && bodies[0].hasSuffix(" GET /a"), "\(answers[0])")
        // The pooled connection closed on /b: sent again on another connection.
        #expect(answers[1].hasPrefix("HTTP/1.1 200 ") && bodies[1].hasSuffix(" GET /b"), "\(answers[1])")
        #expect(bodies[0].split(separator: " ").first != bodies[1].split(separator: " ").first)
        // A POST is never sent twice, without a body (not idempotent) or with one.
        #expect(answers[2].hasPrefix("HTTP/1.1 502 "), "\(answers[2])")
        #expect(answers[3].hasPrefix("HTTP/1.1 200 ") && bodies[3].hasSuffix(" GET /c"), "\(answers[3])")
        #expect(answers[4].hasPrefix("HTTP/1.1 502 "), "\(answers[4])")
        // The backend saw /a, /b twice, /c, each POST once (and this request).
        let counts = try JSONSerialization.jsonObject(with: Data(bodies[5].utf8)) as? [String: Int]
        #expect(counts == ["GET": getsBefore + 5, "POST": 2], "\(answers[5])")
        #expect(closed)
        await proxy.stop()
        await backend.stop()
    }

    @Test func bearerTokensAndTheAuthCookie() async throws {
        let s = try await setUp(token: "foobar")
        let probe = s.probe()
        let missing = try await probe.get("/")
        #expect(missing.status == 401 && missing.body == "Expected bearer token.")
        #expect(try await probe.get("/", headers: ["Authorization": "Bearer foobaz"]).status == 403)
        #expect(try await probe.get("/", headers: ["Authorization": "Bearer foobar"]).body == "Hello World!")
        #expect(try await probe.get("/", headers: ["Cookie": "_plane_auth=foobar"]).body == "Hello World!")
        for odd in ["", "B", "Bearer", "x y z", "Bearer  "] {
            #expect(try await probe.get("/", headers: ["Authorization": odd]).status == 403, "\(odd.debugDescription)")
        }
        // A control character is not HTTP: a clear 400, not a dropped connection.
        #expect(try await probe.get("/", headers: ["Authorization": "Bearer \u{7}"]).status == 400)
        let redirect = try await probe.get("/_plane_auth?token=foobar&redirect=/blahblah%3Fa%3Db")
        #expect(redirect.status == 302 && redirect.headers["location"] == "/blahblah?a=b")
        #expect(redirect.headers["set-cookie"] == "_plane_auth=foobar; Path=/; HttpOnly; SameSite=Lax")
        let invalid = try await probe.get("/_plane_auth?token=foobar&redirect=https://evil.example/")
        #expect(invalid.status == 400 && invalid.body == "Redirect must be relative and start with a slash.")
        await s.stop()
    }

    @Test func webSocketsAreSplicedAndKeepTheBackendActive() async throws {
        let s = try await setUp()
        let socket = try await s.probe().webSocket("/ws")
        for n in 1...6 {
            try socket.sendText("\(n)")
            let (opcode, payload) = try socket.receive()
            #expect(opcode == .text && String(decoding: payload, as: UTF8.self) == "\(n)")
        }
        #expect(s.routes.idleTime(of: "foobar") == .zero, "an open WebSocket keeps the backend active")
        #expect(s.proxy.metrics.openUpgradedConnections == 1)
        socket.close()
        #expect(try await eventually { s.proxy.metrics.openUpgradedConnections == 0 })
        // The handshake and the frames count as bytes both ways once the connection closed.
        #expect(try await eventually { s.proxy.metrics.bytes.in > 200 && s.proxy.metrics.bytes.out > 150 })
        #expect(try await eventually { (s.routes.idleTime(of: "foobar") ?? .zero) > .zero })
        // The connection is plain HTTP again for others.
        #expect(try await s.probe().get("/").body == "Hello World!")
        // Requests on new client connections (spread over the event loops) leave kept-alive
        // connections to the backend in every loop's pool; an upgrade does not take one (the
        // backend, like many, switches protocols only on a connection's first request).
        for _ in 1...4 { _ = try await s.probe().get("/") }
        let again = try await s.probe().webSocket("/ws")
        try again.sendText("again")
        let (opcode, payload) = try again.receive()
        #expect(opcode == .text && String(decoding: payload, as: UTF8.self) == "again")
        again.close()
        await s.stop()
    }

    @Test func aBackendThatIsGoneIs502AndPassthroughTakesUnroutedRequests() async throws {
        let passthroughPort = try TestEnvironment.freePort()
        let passthrough = try ChildProcess(try TestExecutables.path("plane-test-server"), environment: ["PORT": String(passthroughPort), "HOST": "127.0.0.1"])
        _ = try await HTTPProbe(port: passthroughPort).waitUntilAnswering("/")
        let s = try await setUp { $0.passthrough = "127.0.0.1:\(passthroughPort)" }
        #expect(try await s.probe("nothere.plane.test").get("/").body == "Hello World!")
        #expect(try await s.probe("elsewhere.example").get("/").body == "Hello World!")
        await s.backend.stop()
        let gone = try await s.probe().get("/")
        #expect(gone.status == 502)
        await s.proxy.stop()
        await passthrough.stop()
    }

    func count(_ needle: String, in text: String) -> Int { text.components(separatedBy: needle).count - 1 }

    @Test func pipeliningHeadChunkedBodiesAndExpectContinue() async throws {
        let s = try await setUp()
        let probe = s.probe()
        let pipelined = try await probe.raw("GET / HTTP/1.1\r\nHost: foobar.plane.test\r\n\r\nHEAD / HTTP/1.1\r\nHost: foobar.plane.test\r\n\r\n"
                                            + "GET /upload HTTP/1.1\r\nHost: foobar.plane.test\r\nConnection: close\r\n\r\n")
        #expect(count("HTTP/1.1 200 OK", in: pipelined.text) == 3 && count("Hello World!", in: pipelined.text) == 1, "\(pipelined.text)")
        #expect(pipelined.text.hasSuffix("received 0") && pipelined.closed)
        let chunked = try await probe.raw("POST /upload HTTP/1.1\r\nHost: foobar.plane.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                                          + "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        #expect(chunked.text.hasSuffix("received 11"), "\(chunked.text)")
        let echoed = try await probe.raw([Array("POST /echo HTTP/1.1\r\nHost: foobar.plane.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n".utf8),
                                          Array("6\r\n world\r\n0\r\n\r\n".utf8)], pause: .milliseconds(200))
        #expect(echoed.text.contains("hello") && echoed.text.contains(" world") && echoed.closed, "\(echoed.text)")
        // Expect: 100-continue: the proxy says continue, the body follows, the backend answers.
        let expect = try await probe.raw([Array("POST /upload HTTP/1.1\r\nHost: foobar.plane.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n".utf8),
                                          Array("hello".utf8)], pause: .milliseconds(300))
        #expect(expect.text.hasPrefix("HTTP/1.1 100 Continue\r\n") && expect.text.hasSuffix("received 5"), "\(expect.text)")
        // A local answer to such a request closes the connection (the body never comes).
        let refused = try await HTTPProbe(port: s.port).raw("POST / HTTP/1.1\r\nHost: nothere.plane.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        #expect(refused.text.hasPrefix("HTTP/1.1 404") && refused.closed, "\(refused.text)")
        await s.stop()
    }

    @Test func badClientsAndBadBackendsGetClearAnswers() async throws {
        let s = try await setUp {
            $0.upstreamResponseTimeout = .seconds(1)
            $0.headerReadTimeout = .seconds(1)
            $0.idleTimeout = .seconds(2)
        }
        var probe = s.probe()
        probe.timeout = .seconds(10)
        // The backend closes mid-response: the client's connection ends too, the proxy goes on.
        let partial = try await probe.raw("GET /partial HTTP/1.1\r\nHost: foobar.plane.test\r\n\r\n")
        #expect(partial.text.hasPrefix("HTTP/1.1 200") && partial.text.hasSuffix("0123456789") && partial.closed, "\(partial.text)")
        // A backend slower than upstream_timeout_secs: 504.
        let slow = try await probe.get("/slow/3000")
        #expect(slow.status == 504)
        // Garbage and a 1 MB header: 400 (or 431), then closed.
        let garbage = try await probe.raw("\u{1}\u{2}GARBAGE \r\n\r\n")
        #expect(garbage.text.hasPrefix("HTTP/1.1 400") && garbage.closed, "\(garbage.text)")
        let huge = try await probe.raw("GET / HTTP/1.1\r\nHost: foobar.plane.test\r\nX-Big: \(String(repeating: "a", count: 1 << 20))\r\n\r\n")
        #expect(huge.text.hasPrefix("HTTP/1.1 431") && huge.closed, "\(huge.text.prefix(100))")
        // Request smuggling shapes are refused, not guessed at.
        let smuggled = try await probe.raw("POST / HTTP/1.1\r\nHost: foobar.plane.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        #expect(smuggled.text.hasPrefix("HTTP/1.1 400") && smuggled.closed, "\(smuggled.text)")
        #expect(try await probe.raw("GET / HTTP/2.0\r\nHost: foobar.plane.test\r\n\r\n").text.hasPrefix("HTTP/1.1 505"))
        #expect(try await probe.raw("CONNECT foobar.plane.test:443 HTTP/1.1\r\nHost: foobar.plane.test\r\n\r\n").text.hasPrefix("HTTP/1.1 405"))
        // A client that stalls inside its request head is cut off by header_read_timeout_secs.
        let started = ContinuousClock.now
        let stalled = try await probe.raw([Array("GET / HTTP/1.1\r\nHost: foob".utf8), Array("ar.plane.test\r\n\r\n".utf8)], pause: .seconds(3))
        #expect(stalled.closed && !stalled.text.contains("Hello World!"), "\(stalled.text)")
        #expect(ContinuousClock.now - started < .seconds(8))
        // A kept-alive connection that stays silent past idle_timeout_secs is closed; one that
        // is served in time is not.
        let idle = try await probe.raw([Array("GET / HTTP/1.1\r\nHost: foobar.plane.test\r\n\r\n".utf8),
                                        Array("GET / HTTP/1.1\r\nHost: foobar.plane.test\r\nConnection: close\r\n\r\n".utf8)], pause: .seconds(3))
        #expect(count("Hello World!", in: idle.text) == 1 && idle.closed, "\(idle.text)")
        let quick = try await probe.raw([Array("GET / HTTP/1.1\r\nHost: foobar.plane.test\r\n\r\n".utf8),
                                         Array("GET / HTTP/1.1\r\nHost: foobar.plane.test\r\nConnection: close\r\n\r\n".utf8)], pause: .milliseconds(200))
        #expect(count("Hello World!", in: quick.text) == 2, "\(quick.text)")
        // Through all of that the proxy kept serving.
        #expect(try await probe.get("/").body == "Hello World!")
        await s.stop()
    }

    @Test func http10ClientsGetBodiesTheyCanReadAndBadBackendsGet502() async throws {
        let s = try await setUp()
        let probe = s.probe()
        // /echo answers chunked; an HTTP/1.0 client gets the data unchunked, ended by the close.
        let old = try await probe.raw("POST /echo HTTP/1.0\r\nHost: foobar.plane.test\r\nContent-Length: 5\r\n\r\nhello")
        #expect(old.text.hasPrefix("HTTP/1.1 200") && old.text.hasSuffix("\r\n\r\nhello") && old.closed, "\(old.text)")
        #expect(!old.text.lowercased().contains("transfer-encoding") && old.text.contains("Connection: close"))
        // Keep-alive for HTTP/1.0 when asked for and the length is known.
        let kept = try await probe.raw("GET / HTTP/1.0\r\nHost: foobar.plane.test\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\nHost: foobar.plane.test\r\n\r\n")
        #expect(count("Hello World!", in: kept.text) == 2 && kept.text.contains("Connection: keep-alive") && kept.closed, "\(kept.text)")
        // A backend that answers with something that is not HTTP (in its head, or in a body
        // that came with the head: nothing reached the client yet), or switches protocols
        // unasked: 502, and the proxy goes on.
        for (name, answer) in [("broken", "HTTP/1.1 200 OK\\r\\nContent-Length: lots\\r\\n\\r\\n"),
                               ("badchunk", "HTTP/1.1 200 OK\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\nlots\\r\\n"),
                               ("switcher", "HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: lots\\r\\n\\r\\n")] {
            let port = try TestEnvironment.freePort()
            let script = """
                import socket
                s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", \(port))); s.listen()
                while True:
                    c, _ = s.accept(); c.recv(65536); c.sendall(b"\(answer)"); c.close()
                """
            let backend = try ChildProcess("/usr/bin/python3", arguments: ["-c", script])
            // It listens (so the 502 below is about its answer, not a refused connect).
            #expect(try await eventually { (try? await HTTPProbe(port: port).raw("GET / HTTP/1.1\r\n\r\n"))?.text.contains("lots") == true })
            s.routes.add(RouteTable.Route(backendID: try BackendID(name), address: "127.0.0.1:\(port)", bearerToken: nil))
            #expect(try await s.probe("\(name).plane.test").get("/").status == 502, "\(name)")
            #expect(try await probe.get("/").body == "Hello World!")
            await backend.stop()
        }
        #expect(s.proxy.metrics.responses(ofClass: 1) == 0, "an unasked 101 is not counted as relayed")
        await s.stop()
    }

    @Test func keepAliveConnectionsCarryManyRequestsAndPathRoutingWorks() async throws {
        let s = try await setUp { $0.allowPathRouting = true }
        var requests = ""
        for index in 0..<50 { requests += "GET /\(index % 2 == 0 ? "" : "headers") HTTP/1.1\r\nHost: foobar.plane.test\r\n\r\n" }
        requests += "GET / HTTP/1.1\r\nHost: foobar.plane.test\r\nConnection: close\r\n\r\n"
        let many = try await s.probe().raw(requests)
        #expect(count("HTTP/1.1 200 OK", in: many.text) == 51 && many.closed)
        let local = HTTPProbe(port: s.port, hostHeader: "localhost:\(s.port)")
        #expect(try await local.get("/_plane_backend=foobar/").body == "Hello World!")
        let env = try await local.get("/_plane_backend=foobar/headers?x=1")
        #expect(env.body.contains("\"host\":\"localhost:\(s.port)\""), "\(env.body)")
        #expect(try await local.get("/_plane_backend=nothere/").status == 404)
        await s.stop()
    }

    @Test func largeBodiesStreamBothWays() async throws {
        let s = try await setUp { $0.upstreamResponseTimeout = .seconds(2) }
        let curl = try SystemProgram("curl", debianPackage: "curl").path()
        let resolve = ["--resolve", "foobar.plane.test:\(s.port):127.0.0.1"]
        let size = 200 << 20
        let down = try await SystemProgram.run(executable: curl, ["-sS", "-o", "/dev/null", "-w", "%{size_download}"] + resolve + ["http://foobar.plane.test:\(s.port)/download/\(size)"])
        #expect(down.status == 0 && down.output == String(size), "\(down.output)")
        // A sparse file reads as zeros; curl sends it with Expect: 100-continue. The upload may
        // take longer than upstream_timeout_secs: that limit starts once the request is sent.
        let file = try TestEnvironment.temporaryDirectory("upload") + "/upload.bin"
        _ = FileManager.default.createFile(atPath: file, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
        try handle.truncate(atOffset: UInt64(size))
        try handle.close()
        let up = try await SystemProgram.run(executable: curl, ["-sS", "-X", "POST", "-T", file, "--limit-rate", "50M"] + resolve + ["http://foobar.plane.test:\(s.port)/upload"])
        #expect(up.status == 0 && up.output == "received \(size)", "\(up.output)")
        await s.stop()
    }

    // MARK: Clients that give up anywhere

    /// 240 clients on 12 threads, each doing one of a dozen things and stopping at a random
    /// point (mid-head, mid-upload, mid-download, mid-stream, before a slow answer, after an
    /// upgrade, in a pipeline), with a FIN or a reset, beside clients that half-close, send
    /// garbage, or meet a backend that closes mid-response. When they have all gone: no
    /// exchange or connection is still counted open (the backend can be swept), the proxy has
    /// closed every client connection, the upstream connections left are the pool's idle ones
    /// within its bound, and it still answers. The seed is in every failure message.
    @Test func clientsThatGiveUpAnywhereLeaveNothingOpen() async throws {
        // A small pool, so that a leaked upstream connection shows above its bound.
        let idlePerLoop = 2
        let s = try await setUp { $0.upstreamIdleConnections = idlePerLoop }
        let seed = UInt64.random(in: 0...UInt64.max)
        let port = s.port
        let findings = try await withThrowingTaskGroup(of: [String].self) { group in
            for worker in 0..<12 {
                group.addTask {
                    try await SystemProgram.offThePool {
                        var random = SplitMix64(seed: seed &+ UInt64(worker))
                        var findings: [String] = []
                        for _ in 0..<20 {
                            if let finding = try Self.misbehave(port: port, random: &random) { findings.append(finding) }
                        }
                        return findings
                    }
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(findings.isEmpty, "seed \(seed): \(findings)")
        #expect(try await eventually(timeout: .seconds(15)) { (s.routes.idleTime(of: "foobar") ?? .zero) > .zero },
                "seed \(seed): an exchange or a connection is still counted open")
        #expect(s.proxy.metrics.openUpgradedConnections == 0, "seed \(seed)")
        // Client side: only the listener and TIME_WAIT (the proxy closed first) may be left.
        let clientSockets = { Self.tcpStates { local, _ in local == port } }
        #expect(try await eventually(timeout: .seconds(15)) { clientSockets().keys.allSatisfy { $0 == "0A" || $0 == "06" } },
                "seed \(seed): client connections left open, by state: \(clientSockets())")
        // Upstream side: idle pooled connections only, none the backend closed and the proxy kept.
        let upstreamSockets = { Self.tcpStates { _, remote in remote == s.backendPort } }
        let bound = idlePerLoop * ProcessInfo.processInfo.activeProcessorCount
        #expect(try await eventually(timeout: .seconds(15)) {
            let states = upstreamSockets()
            return states.keys.allSatisfy { $0 == "01" || $0 == "06" } && (states["01"] ?? 0) <= bound
        }, "seed \(seed): upstream connections by state: \(upstreamSockets()), at most \(bound) established")
        #expect(try await s.probe().get("/").body == "Hello World!")
        await s.stop()
    }

    /// One misbehaving client; a description when the proxy did not do what it must.
    private static func misbehave(port: Int, random: inout SplitMix64) throws -> String? {
        let host = "Host: foobar.plane.test\r\n"
        let connection = try RawTCPConnection(port: port)
        let reset = random.next(below: 2) == 0
        defer { reset ? connection.abort() : connection.close() }
        func pause(upTo milliseconds: Int) { Thread.sleep(forTimeInterval: Double(random.next(below: milliseconds)) / 1000) }
        func readSome(upTo bytes: Int) {
            let wanted = random.next(below: bytes)
            var got = 0
            while got < wanted, let piece = connection.readSome(), !piece.isEmpty { got += piece.count }
        }
        switch random.next(below: 12) {
        case 0:  // complete keep-alive exchanges
            for _ in 0...random.next(below: 3) {
                try connection.send("GET / HTTP/1.1\r\n\(host)\r\n")
                let head = String(decoding: try connection.read(until: "\r\n\r\n"), as: UTF8.self)
                guard head.hasPrefix("HTTP/1.1 200") else { return "a plain GET was answered \(head)" }
                _ = try connection.read(exactly: 12)
            }
        case 1:  // gone mid-head
            let request = Array("GET /headers HTTP/1.1\r\n\(host)X-Long: \(String(repeating: "a", count: 200))\r\n\r\n".utf8)
            try connection.send(Array(request.prefix(1 + random.next(below: request.count - 1))))
            pause(upTo: 50)
        case 2:  // gone mid-upload
            try connection.send("POST /upload HTTP/1.1\r\n\(host)Content-Length: 5000\r\n\r\n")
            try connection.send([UInt8](repeating: 0x61, count: random.next(below: 5000)))
            pause(upTo: 50)
        case 3:  // gone in the middle of a chunked upload
            try connection.send("POST /upload HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n")
            for _ in 0..<random.next(below: 4) { try connection.send("10\r\n0123456789abcdef\r\n") }
            try connection.send(Array("8\r\nabcd".utf8.prefix(random.next(below: 8))))
            pause(upTo: 50)
        case 4:  // gone mid-download, its receive window full or not
            try connection.send("GET /download/4000000 HTTP/1.1\r\n\(host)\r\n")
            readSome(upTo: 300_000)
        case 5:  // gone mid-stream (server-sent events)
            try connection.send("GET /sse/50/20 HTTP/1.1\r\n\(host)\r\n")
            readSome(upTo: 400)
        case 6:  // gone before or just after a slow answer
            try connection.send("GET /slow/200 HTTP/1.1\r\n\(host)\r\n")
            pause(upTo: 300)
        case 7:  // half-closed after its request: still answered, then closed
            try connection.send("GET / HTTP/1.1\r\n\(host)\r\n")
            connection.shutdownWrite()
            let (bytes, closed) = connection.readUntilClosed()
            let text = String(decoding: bytes, as: UTF8.self)
            guard text.hasPrefix("HTTP/1.1 200"), text.hasSuffix("Hello World!"), closed else { return "a half-closed client got \(text.debugDescription), closed: \(closed)" }
        case 8:  // pipelined requests, gone after some of the answers (each whole, in order)
            try connection.send((1...3).map { "GET /slow/\($0) HTTP/1.1\r\n\(host)\r\n" }.joined())
            for index in 1..<(1 + random.next(below: 4)) {
                let head = String(decoding: try connection.read(until: "\r\n\r\n"), as: UTF8.self)
                let body = "slept \(index) ms"
                guard head.hasPrefix("HTTP/1.1 200"), head.lowercased().contains("content-length: \(body.utf8.count)\r\n") else { return "pipelined answer \(index) was \(head)" }
                let got = String(decoding: try connection.read(exactly: body.utf8.count), as: UTF8.self)
                guard got == body else { return "pipelined answer \(index) had the body \(got)" }
            }
        case 9:  // upgraded, a frame echoed or not, then gone
            try connection.send("GET /ws HTTP/1.1\r\n\(host)Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            let head = String(decoding: try connection.read(until: "\r\n\r\n"), as: UTF8.self)
            guard head.hasPrefix("HTTP/1.1 101") else { return "an upgrade was answered \(head)" }
            if random.next(below: 2) == 0 {
                try connection.send([0x81, 0x82, 0, 0, 0, 0, 0x68, 0x69])  // "hi", masked with zeros
                readSome(upTo: 4)
            }
        case 10:  // the backend closes mid-response: the client connection ends too
            try connection.send("GET /partial HTTP/1.1\r\n\(host)\r\n")
            let (bytes, closed) = connection.readUntilClosed()
            guard closed else { return "a truncated response left its client connection open: \(String(decoding: bytes, as: UTF8.self).debugDescription)" }
        default:  // garbage: refused and closed
            var bytes = (0..<(1 + random.next(below: 300))).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            bytes[0] = 0x01  // never a method's first letter
            try connection.send(bytes + Array("\r\n\r\n".utf8))
            let (answer, closed) = connection.readUntilClosed()
            guard closed else { return "garbage left its connection open: \(String(decoding: answer, as: UTF8.self).debugDescription)" }
        }
        return nil
    }

    /// TCP sockets on loopback (IPv4) whose local and remote ports match, counted by state
    /// (hex as in /proc/net/tcp: 01 established, 06 TIME_WAIT, 08 CLOSE_WAIT, 0A listen).
    private static func tcpStates(_ matches: (_ localPort: Int, _ remotePort: Int) -> Bool) -> [String: Int] {
        guard let table = BoundedFile.generatedText("/proc/net/tcp") else { return ["unreadable": 1] }
        var states: [String: Int] = [:]
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            guard fields.count > 3, let local = fields[1].split(separator: ":").last.flatMap({ Int($0, radix: 16) }),
                  let remote = fields[2].split(separator: ":").last.flatMap({ Int($0, radix: 16) }), matches(local, remote) else { continue }
            states[String(fields[3]), default: 0] += 1
        }
        return states
    }
}
