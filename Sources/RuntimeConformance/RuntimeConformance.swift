import ContainerRuntime
import Foundation
import PlaneCore
import PlaneTestSupport
import Testing

/// What the conformance checks need to know about the runtime under test.
public struct RuntimeConformanceHarness: Sendable {
    public let runtime: any ContainerRuntime
    public let droneID: DroneID
    /// The `plane-test-server` image as this runtime refers to it.
    public let testServerImage: String
    /// A reference this runtime cannot get (it must fail fast).
    public let unknownImage: String

    public init(runtime: any ContainerRuntime, droneID: DroneID, testServerImage: String, unknownImage: String) {
        self.runtime = runtime
        self.droneID = droneID
        self.testServerImage = testServerImage
        self.unknownImage = unknownImage
    }

    /// A spec with a fresh port, networked as a drone would network it on this runtime:
    /// the host's network on 127.0.0.1 where the runtime offers it (as configured), else an
    /// address of the backend's own.
    public func spec(_ backend: BackendID = .random(), env: [String: String] = [:], image: String? = nil) throws -> BackendSpec {
        let modes = runtime.descriptor.capabilities.networkModes
        let network: NetworkPlan = modes.contains(.host) ? .host(address: "127.0.0.1") : modes.contains(.bridge) ? .bridge(network: nil) : .publish(hostAddress: "127.0.0.1")
        return BackendSpec(backendID: backend, droneID: droneID, image: image ?? testServerImage, env: env,
                           port: UInt16(try TestEnvironment.freePort()), network: network, pullPolicy: .ifNotPresent)
    }
}

/// The behaviour every `ContainerRuntime` must show, on real processes. Each runtime's test
/// target calls every check (see `DockerRuntimeConformanceTests`).
public enum RuntimeConformance {
    static func waitFor(_ what: String, within: Duration = .seconds(30), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + within
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("timed out waiting for \(what)")
    }

    static func cleanUp(_ harness: RuntimeConformanceHarness, _ backend: BackendID) async {
        try? await harness.runtime.stop(backend, grace: .seconds(1))
        try? await harness.runtime.remove(backend)
    }

    /// Start → the server answers; status, list, logs and stats report it; stop and remove
    /// leave nothing (no container, no port held).
    public static func startServesAndCleansUp(_ h: RuntimeConformanceHarness) async throws {
        let spec = try h.spec(env: ["GREETING": "conformance"])
        do {
            try await h.runtime.prepare(spec)
            let handle = try await h.runtime.start(spec)
            #expect(handle.backendID == spec.backendID)
            let address = try #require(handle.address, "start must return where the backend listens")
            #expect(address.port == spec.port)
            let http = HTTPProbe(host: address.host, port: Int(address.port))
            #expect(try await http.waitUntilAnswering("/").body == "Hello World!")
            let env = try JSONSerialization.jsonObject(with: Data(try await http.get("/env").body.utf8)) as? [String: String]
            #expect(env?["PORT"] == String(spec.port), "the runtime passes PORT")
            #expect(env?["GREETING"] == "conformance")
            #expect(try await h.runtime.status(of: spec.backendID) == .running(address: address))
            #expect(try await h.runtime.list().contains { $0.backendID == spec.backendID })
            var sawStartLine = false
            for try await line in h.runtime.logs(of: spec.backendID, follow: false) where line.text.contains("listening on") {
                sawStartLine = true
            }
            #expect(sawStartLine, "logs contain the startup line")
            let sample = try await h.runtime.stats(of: spec.backendID)
            #expect(sample.cpuPercent >= 0 && sample.cpuPercent <= 100)
            #expect(sample.memoryBytes > 0 && sample.memoryLimitBytes >= sample.memoryBytes)
            try await h.runtime.stop(spec.backendID, grace: .seconds(5))
            let stopped = try await h.runtime.status(of: spec.backendID)
            #expect(!stopped.isRunning)
            try await h.runtime.remove(spec.backendID)
            #expect(try await h.runtime.status(of: spec.backendID) == .unknown)
            #expect(!(try await h.runtime.list().contains { $0.backendID == spec.backendID }))
            await #expect(throws: (any Error).self, "the port is free again") { try await http.get("/") }
        } catch {
            await cleanUp(h, spec.backendID)
            throw error
        }
    }

    /// `EXIT_CODE=3` ends as exited with 3, and the exit arrives on the event stream.
    public static func exitCodeIsReportedAndEvented(_ h: RuntimeConformanceHarness) async throws {
        let spec = try h.spec(env: ["EXIT_CODE": "3", "EXIT_TIMEOUT": "300"])
        let events = h.runtime.events()
        do {
            _ = try await h.runtime.start(spec)
            var code: Int32?
            for await event in events where event.backendID == spec.backendID {
                if case .exited(let c) = event.kind { code = c; break }
            }
            #expect(code == 3)
            #expect(try await h.runtime.status(of: spec.backendID) == .exited(code: 3))
            await cleanUp(h, spec.backendID)
        } catch {
            await cleanUp(h, spec.backendID)
            throw error
        }
    }

    /// Starts `spec` and waits until it answers HTTP at the address the runtime returned.
    static func startAnswering(_ h: RuntimeConformanceHarness, _ spec: BackendSpec) async throws -> HTTPProbe {
        let handle = try await h.runtime.start(spec)
        let address = try #require(handle.address)
        let http = HTTPProbe(host: address.host, port: Int(address.port))
        _ = try await http.waitUntilAnswering("/")
        return http
    }

    /// `GET /exit/0` ends as exited with 0.
    public static func exitPathEndsWithZero(_ h: RuntimeConformanceHarness) async throws {
        let spec = try h.spec()
        do {
            let http = try await startAnswering(h, spec)
            _ = try? await http.get("/exit/0")
            try await waitFor("exit 0") { try await h.runtime.status(of: spec.backendID) == .exited(code: 0) }
            await cleanUp(h, spec.backendID)
        } catch {
            await cleanUp(h, spec.backendID)
            throw error
        }
    }

    /// `wait(for:)` returns `.unknown` for an unknown backend, does not return while the
    /// backend runs, returns how it ended once it has (`GET /exit/5`), and ends when the
    /// waiting task is cancelled.
    public static func waitReturnsHowTheBackendEnded(_ h: RuntimeConformanceHarness) async throws {
        #expect(try await h.runtime.wait(for: .random()) == .unknown)
        let spec = try h.spec()
        do {
            let http = try await startAnswering(h, spec)
            let runtime = h.runtime
            let backend = spec.backendID
            // A cancelled wait ends.
            let cancelled = Task { try await runtime.wait(for: backend) }
            try await Task.sleep(for: .milliseconds(300))
            cancelled.cancel()
            _ = try? await cancelled.value
            let waiter = Task { try await runtime.wait(for: backend) }
            try await Task.sleep(for: .seconds(1))
            #expect(try await h.runtime.status(of: backend).isRunning, "the backend still runs, so the wait has not returned")
            _ = try? await http.get("/exit/5")
            let ended = try await withThrowingTaskGroup(of: RuntimeStatus?.self) { group in
                group.addTask { try await waiter.value }
                group.addTask { try await Task.sleep(for: .seconds(20)); return nil }
                defer { group.cancelAll() }
                return try await group.next() ?? nil
            }
            waiter.cancel()
            #expect(ended == .exited(code: 5))
            await cleanUp(h, spec.backendID)
        } catch {
            await cleanUp(h, spec.backendID)
            throw error
        }
    }

    /// Stop and remove succeed for unknown backends and when repeated.
    public static func stopAndRemoveAreIdempotent(_ h: RuntimeConformanceHarness) async throws {
        let unknown = BackendID.random()
        try await h.runtime.stop(unknown, grace: .seconds(1))
        try await h.runtime.remove(unknown)
        #expect(try await h.runtime.status(of: unknown) == .unknown)
        let spec = try h.spec()
        _ = try await h.runtime.start(spec)
        try await h.runtime.stop(spec.backendID, grace: .seconds(2))
        try await h.runtime.stop(spec.backendID, grace: .seconds(2))
        try await h.runtime.remove(spec.backendID)
        try await h.runtime.remove(spec.backendID)
        #expect(try await h.runtime.status(of: spec.backendID) == .unknown)
        // A second start of a live backend is refused.
        let again = try h.spec()
        _ = try await h.runtime.start(again)
        do {
            _ = try await h.runtime.start(again)
            Issue.record("a second start of the same backend must fail")
        } catch {
            #expect(error.code == .alreadyExists)
        }
        await cleanUp(h, again.backendID)
    }

    /// An image the runtime cannot get fails fast with `imageUnavailable` naming the image.
    public static func unknownImageFailsFast(_ h: RuntimeConformanceHarness) async throws {
        let spec = try h.spec(image: h.unknownImage)
        let started = ContinuousClock.now
        do {
            try await h.runtime.prepare(spec)
            _ = try await h.runtime.start(spec)
            Issue.record("an unknown image must fail")
        } catch {
            #expect(error.code == .imageUnavailable)
            let name = h.unknownImage.split(separator: "/").last.map(String.init) ?? h.unknownImage
            #expect(error.message.contains(name.split(separator: ":").first.map(String.init) ?? name), "the message names the image: \(error.message)")
        }
        #expect(ContinuousClock.now - started < .seconds(30))
        #expect(try await h.runtime.status(of: spec.backendID) == .unknown)
    }

    /// An invalid runtime option fails with `invalidSpec` before anything is created.
    public static func invalidOptionFailsBeforeCreating(_ h: RuntimeConformanceHarness) async throws {
        var spec = try h.spec()
        spec.options = JSONObject([("no_such_option_anywhere", .integer(1))])
        do {
            _ = try await h.runtime.start(spec)
            Issue.record("an unknown option must fail")
            await cleanUp(h, spec.backendID)
        } catch {
            #expect(error.code == .invalidSpec)
        }
        #expect(try await h.runtime.status(of: spec.backendID) == .unknown)
        #expect(throws: RuntimeError.self) { try h.runtime.validate(spec) }
    }

    /// Twenty backends started at once all answer and are all gone after removal.
    public static func twentyConcurrentBackends(_ h: RuntimeConformanceHarness) async throws {
        let specs = try (0..<20).map { _ in try h.spec() }
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for spec in specs {
                    group.addTask {
                        let handle = try await h.runtime.start(spec)
                        let address = try #require(handle.address)
                        let body = try await HTTPProbe(host: address.host, port: Int(address.port)).waitUntilAnswering("/", within: .seconds(60)).body
                        #expect(body == "Hello World!")
                    }
                }
                try await group.waitForAll()
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for spec in specs {
                    group.addTask {
                        try await h.runtime.stop(spec.backendID, grace: .seconds(5))
                        try await h.runtime.remove(spec.backendID)
                    }
                }
                try await group.waitForAll()
            }
            let remaining = try await h.runtime.list().map(\.backendID)
            #expect(Set(remaining).isDisjoint(with: specs.map(\.backendID)))
        } catch {
            for spec in specs { await cleanUp(h, spec.backendID) }
            throw error
        }
    }
}
