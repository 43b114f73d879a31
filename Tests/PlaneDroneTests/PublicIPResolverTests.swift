import Foundation
import PlaneCore
import PlaneTestSupport
import Testing
@testable import PlaneDrone

struct PublicIPResolverTests {
    @Test func literalAndLookup() async throws {
        #expect(try await PublicIPResolver.resolve(.literal("203.0.113.7")) == "203.0.113.7")
        #expect(try await PublicIPResolver.resolve(.literal("2001:db8::1")) == "2001:db8::1")
        await #expect(throws: DroneError.self) { try await PublicIPResolver.resolve(.literal("not-an-ip")) }
        // An IP API answering with a trailing newline (v0.3.10 failed on it).
        let directory = try TestEnvironment.temporaryDirectory("ip-api")
        try "123.11.22.33\n".write(toFile: directory + "/ip", atomically: true, encoding: .utf8)
        try "hello\n".write(toFile: directory + "/bad", atomically: true, encoding: .utf8)
        let port = try TestEnvironment.freePort()
        let server = try ChildProcess(try SystemProgram("python3", debianPackage: "python3").path(),
                                      arguments: ["-m", "http.server", "--bind", "127.0.0.1", "--directory", directory, "\(port)"])
        defer { server.signal(SIGKILL) }
        _ = try await HTTPProbe(port: port).waitUntilAnswering("/ip")
        #expect(try await PublicIPResolver.resolve(.lookup(url: "http://127.0.0.1:\(port)/ip")) == "123.11.22.33")
        do {
            _ = try await PublicIPResolver.resolve(.lookup(url: "http://127.0.0.1:\(port)/bad"), attempts: 2, pause: .milliseconds(10))
            Issue.record("a body that is not an IP must fail")
        } catch {
            #expect(error.message.contains("not an IP address") && error.message.contains("/bad"))
        }
        server.signal(SIGTERM)
        _ = await server.waitForExit(timeout: .seconds(5))
    }
}
