import Foundation
import PlaneTestSupport
import Testing

/// The test backend, run as a real process on a loopback port.
@Suite(.timeLimit(.minutes(2)))
struct PlaneTestServerTests {
    func start(_ environment: [String: String] = [:]) async throws -> (ChildProcess, HTTPProbe) {
        let port = try TestEnvironment.freePort()
        let child = try ChildProcess(try TestExecutables.path("plane-test-server"), environment: ["PORT": String(port), "HOST": "127.0.0.1"].merging(environment) { $1 })
        return (child, HTTPProbe(port: port))
    }

    @Test func answersHelloWorldAndLogsEachRequest() async throws {
        let (server, http) = try await start()
        let response = try await http.waitUntilAnswering("/")
        #expect(response.status == 200)
        #expect(response.body == "Hello World!")
        #expect(try await http.get("/missing").status == 404)
        #expect(server.output.contains("listening on 127.0.0.1:\(http.port)"))
        #expect(server.output.contains("GET / 200"))
        #expect(server.output.contains("GET /missing 404"))
        await server.stop()
    }

    @Test func reportsHeadersAndEnvironmentAsJSON() async throws {
        let (server, http) = try await start(["GREETING": "hi/there"])
        _ = try await http.waitUntilAnswering("/")
        let headers = try JSONSerialization.jsonObject(with: Data(try await http.get("/headers", headers: ["X-Plane-Test": "42"]).body.utf8)) as? [String: String]
        #expect(headers?["x-plane-test"] == "42")
        #expect(headers?["host"] == "127.0.0.1:\(http.port)")
        let env = try JSONSerialization.jsonObject(with: Data(try await http.get("/env").body.utf8)) as? [String: String]
        #expect(env?["GREETING"] == "hi/there")
        #expect(env?["PORT"] == String(http.port))
        await server.stop()
    }

    @Test func exitPathEndsTheProcessWithThatCode() async throws {
        let (server, http) = try await start()
        _ = try await http.waitUntilAnswering("/")
        #expect(try await http.get("/exit/3").body == "Exiting with code 3")
        #expect(await server.waitForExit() == 3)
    }

    @Test func exitCodeEnvironmentExitsWithoutServing() async throws {
        let (server, http) = try await start(["EXIT_CODE": "5", "EXIT_TIMEOUT": "200"])
        #expect(await server.waitForExit() == 5)
        await #expect(throws: (any Error).self) { try await http.get("/") }
    }

    @Test func webSocketEchoesTextAndBinary() async throws {
        let (server, http) = try await start()
        _ = try await http.waitUntilAnswering("/")
        let socket = try await http.webSocket("/any/path")
        try socket.sendText("hello")
        let (opcode, payload) = try socket.receive()
        #expect(opcode == .text && String(decoding: payload, as: UTF8.self) == "hello")
        let big = (0..<70_000).map { UInt8(truncatingIfNeeded: $0) }
        try socket.send(.binary, big)
        let (binaryOpcode, echoed) = try socket.receive()
        #expect(binaryOpcode == .binary && echoed == big)
        try socket.send(.ping, [1, 2])
        let (pongOpcode, pongPayload) = try socket.receive()
        #expect(pongOpcode == .pong && pongPayload == [1, 2])
        socket.close()
        await server.stop()
    }

    @Test func sigtermExitsCleanlyUnlessIgnored() async throws {
        let (server, http) = try await start()
        _ = try await http.waitUntilAnswering("/")
        server.signal(SIGTERM)
        #expect(await server.waitForExit() == 0)

        let (stubborn, stubbornHTTP) = try await start(["IGNORE_SIGTERM": "1"])
        _ = try await stubbornHTTP.waitUntilAnswering("/")
        stubborn.signal(SIGTERM)
        try await Task.sleep(for: .milliseconds(300))
        #expect(stubborn.isRunning)
        #expect(try await stubbornHTTP.get("/").body == "Hello World!")
        await stubborn.stop(grace: .milliseconds(200))
        #expect(!stubborn.isRunning)
    }
}
