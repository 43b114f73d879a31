import ContainerRuntime
import AsyncHTTPClient
import Foundation
import ImageBuilder
import Logging
import NIOCore
import PlaneCore
import PlaneTestSupport
import RuntimeConformance
import Testing
@testable import DockerRuntime

enum DockerTestSetup {
    static let endpoint = ProcessInfo.processInfo.environment["PLANE_TEST_DOCKER_ENDPOINT"] ?? "/var/run/docker.sock"

    static func harness() async throws -> RuntimeConformanceHarness {
        let drone = DroneID.random()
        var configuration = DockerRuntimeConfiguration()
        configuration.endpoint = endpoint
        let runtime: DockerRuntime
        do {
            runtime = try await DockerRuntime.make(configuration: configuration, droneID: drone, logger: Logger(label: "test.docker"))
        } catch {
            throw TestSupportError("\(error.message) Start it with: bash scripts/docker-daemon.sh start (make test does).")
        }
        let image = try await DockerTestImage.shared.ensureLoaded()
        return RuntimeConformanceHarness(runtime: runtime, droneID: drone, testServerImage: image, unknownImage: "127.0.0.1:9/plane-no-such-image:latest")
    }
}

/// The runtime conformance suite against the real Docker daemon.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct DockerRuntimeConformanceTests {
    @Test func startServesAndCleansUp() async throws { try await RuntimeConformance.startServesAndCleansUp(try await DockerTestSetup.harness()) }
    @Test func exitCodeIsReportedAndEvented() async throws { try await RuntimeConformance.exitCodeIsReportedAndEvented(try await DockerTestSetup.harness()) }
    @Test func exitPathEndsWithZero() async throws { try await RuntimeConformance.exitPathEndsWithZero(try await DockerTestSetup.harness()) }
    @Test func waitReturnsHowTheBackendEnded() async throws { try await RuntimeConformance.waitReturnsHowTheBackendEnded(try await DockerTestSetup.harness()) }
    @Test func stopAndRemoveAreIdempotent() async throws { try await RuntimeConformance.stopAndRemoveAreIdempotent(try await DockerTestSetup.harness()) }
    @Test func unknownImageFailsFast() async throws { try await RuntimeConformance.unknownImageFailsFast(try await DockerTestSetup.harness()) }
    @Test func invalidOptionFailsBeforeCreating() async throws { try await RuntimeConformance.invalidOptionFailsBeforeCreating(try await DockerTestSetup.harness()) }
    @Test func twentyConcurrentBackends() async throws { try await RuntimeConformance.twentyConcurrentBackends(try await DockerTestSetup.harness()) }

    @Test func limitsLabelsAndEnvironmentReachDocker() async throws {
        let h = try await DockerTestSetup.harness()
        var spec = try h.spec(env: ["A": "b"])
        spec.limits = try ResourceLimitsSpec(wire: ResourceLimits(cpuPeriod: 1, cpuPeriodPercent: 50, cpuTimeLimit: 90, memoryLimitBytes: 128 << 20), pidsLimit: 100)
        _ = try await h.runtime.start(spec)
        let json = try await SystemProgram("docker", debianPackage: "docker.io").run(["inspect", spec.containerName])
        try await h.runtime.stop(spec.backendID, grace: .seconds(2))
        try await h.runtime.remove(spec.backendID)
        let info = try #require((try JSONParser.parse(json)).arrayValue?.first?.objectValue)
        let host = try #require(info["HostConfig"]?.objectValue)
        #expect(host["Memory"]?.int64Value == 128 << 20)
        #expect(host["CpuPeriod"]?.int64Value == 1_000_000)
        #expect(host["CpuQuota"]?.int64Value == 500_000)
        #expect(host["PidsLimit"]?.int64Value == 100)
        // The drone's own isolated network, no published ports, no raw sockets.
        #expect(host["NetworkMode"]?.stringValue == DockerRuntimeConfiguration.defaultManagedNetwork)
        #expect((host["PortBindings"]?.objectValue?.count ?? 0) == 0)
        #expect(host["CapDrop"]?.arrayValue?.compactMap(\.stringValue) == ["NET_RAW"])
        #expect(host["OomScoreAdj"]?.int64Value == 500, "a backend is killed before the drone")
        let ulimit = host["Ulimits"]?.arrayValue?.first?.objectValue
        #expect(ulimit?["Name"]?.stringValue == "cpu" && ulimit?["Soft"]?.int64Value == 90 && ulimit?["Hard"]?.int64Value == 90)
        let config = try #require(info["Config"]?.objectValue)
        let labels = config["Labels"]?.objectValue
        #expect(labels?["dev.plane.managed"]?.stringValue == "true")
        #expect(labels?["dev.plane.backend"]?.stringValue == spec.containerName)
        #expect(labels?["dev.plane.drone"]?.stringValue == h.droneID.rawValue)
        let env = config["Env"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(env.contains("A=b") && env.contains("PORT=\(spec.port)"))
    }

    /// A spawn without limits of its own gets the drone's memory and pids limits.
    @Test func aSpawnWithoutLimitsGetsTheDronesDefaults() async throws {
        let h = try await DockerTestSetup.harness()
        let spec = try h.spec()
        #expect(spec.limits.memoryBytes == nil && spec.limits.pidsLimit == nil)
        _ = try await h.runtime.start(spec)
        let json = try await SystemProgram("docker", debianPackage: "docker.io").run(["inspect", spec.containerName])
        let sample = try await h.runtime.stats(of: spec.backendID)
        try await h.runtime.stop(spec.backendID, grace: .seconds(2))
        try await h.runtime.remove(spec.backendID)
        let host = try #require((try JSONParser.parse(json)).arrayValue?.first?.objectValue?["HostConfig"]?.objectValue)
        #expect(host["Memory"]?.int64Value == ResourceLimitsSpec.defaultMemoryBytes)
        #expect(host["PidsLimit"]?.int64Value == 4096)
        #expect(sample.memoryLimitBytes == UInt64(ResourceLimitsSpec.defaultMemoryBytes), "the limit shows in the backend's stats")
    }

    @Test func pullsFromARegistryWithCredentials() async throws {
        let h = try await DockerTestSetup.harness()
        let registry = try await RegistryProcess.start(credentials: ("plane", "s3cret"))
        do {
            let reference = try await registry.push(localImage: h.testServerImage, as: "plane/test-server", tag: "v1")
            var spec = try h.spec(image: reference)
            spec.pullPolicy = .always
            // Wrong password: the pull fails with the registry's answer, naming the image.
            spec.credentials = RegistryCredentials(username: "plane", password: "wrong")
            do {
                try await h.runtime.prepare(spec)
                Issue.record("a pull with a wrong password must fail")
            } catch {
                #expect(error.code == .imageUnavailable)
                #expect(error.message.contains("plane/test-server"))
            }
            // Right password (sent as X-Registry-Auth): pulled, and the backend runs from it.
            spec.credentials = RegistryCredentials(username: "plane", password: "s3cret")
            try await h.runtime.prepare(spec)
            let handle = try await h.runtime.start(spec)
            let address = try #require(handle.address)
            #expect(try await HTTPProbe(host: address.host, port: Int(address.port)).waitUntilAnswering("/").body == "Hello World!")
            try await h.runtime.stop(spec.backendID, grace: .seconds(2))
            try await h.runtime.remove(spec.backendID)
            // The image is on the daemon now, but a spawn without the credentials (or with
            // wrong ones) cannot run it: Docker is asked to pull it with theirs, and the
            // registry refuses. With the right ones it runs without a new pull being needed.
            for credentials in [nil, RegistryCredentials(username: "plane", password: "wrong")] {
                var other = try h.spec(image: reference)
                other.credentials = credentials
                do {
                    _ = try await h.runtime.start(other)
                    try? await h.runtime.stop(other.backendID, grace: .seconds(1))
                    try? await h.runtime.remove(other.backendID)
                    Issue.record("a private image ran for a spawn with \(credentials == nil ? "no" : "wrong") credentials")
                } catch {
                    #expect(error.code == .imageUnavailable, "\(error)")
                }
                var never = other
                never.pullPolicy = .never
                await #expect(throws: RuntimeError.self) { try await h.runtime.prepare(never) }
            }
            var again = try h.spec(image: reference)
            again.credentials = RegistryCredentials(username: "plane", password: "s3cret")
            _ = try await h.runtime.start(again)
            try await h.runtime.stop(again.backendID, grace: .seconds(2))
            try await h.runtime.remove(again.backendID)
            // Pull policy Never with an image that is not there.
            var never = try h.spec(image: "\(registry.address)/plane/absent:v9")
            never.pullPolicy = .never
            do {
                try await h.runtime.prepare(never)
                Issue.record("Never must not pull")
            } catch {
                #expect(error.code == .imageUnavailable && error.message.contains("pull policy is Never"))
            }
            _ = try? await SystemProgram("docker", debianPackage: "docker.io").run(["rmi", reference])
            await registry.stop()
        } catch {
            await registry.stop()
            throw error
        }
    }

    @Test func eventStreamReconnectsWhenTheDaemonStreamEnds() async throws {
        // The runtime talks to dockerd through a relay that can cut its connections.
        let relay = try await NetworkRelay(to: .unixSocket(DockerTestSetup.endpoint))
        let image = try await DockerTestImage.shared.ensureLoaded()
        var configuration = DockerRuntimeConfiguration()
        configuration.endpoint = "http://127.0.0.1:\(relay.port)"
        let drone = DroneID.random()
        let runtime = try await DockerRuntime.make(configuration: configuration, droneID: drone, logger: Logger(label: "test.docker"))
        let h = RuntimeConformanceHarness(runtime: runtime, droneID: drone, testServerImage: image, unknownImage: "127.0.0.1:9/none:latest")
        let events = runtime.events()
        // A first exit is seen; then the stream is cut; a second exit must still arrive.
        let first = try h.spec(env: ["EXIT_CODE": "4", "EXIT_TIMEOUT": "100"])
        _ = try await runtime.start(first)
        var iterator = events.makeAsyncIterator()
        var firstCode: Int32?
        while let event = await iterator.next() {
            if event.backendID == first.backendID, case .exited(let c) = event.kind { firstCode = c; break }
        }
        #expect(firstCode == 4)
        // Cutting idle keep-alive connections right before a call must not fail the call:
        // the request is sent again on a fresh connection.
        for _ in 0..<10 {
            relay.cutConnections()
            _ = try await runtime.status(of: first.backendID)
        }
        relay.cutConnections()
        let second = try h.spec(env: ["EXIT_CODE": "5", "EXIT_TIMEOUT": "1500"])
        _ = try await runtime.start(second)
        var secondCode: Int32?
        while let event = await iterator.next() {
            #expect(event.backendID != first.backendID, "no event is delivered twice")
            if event.backendID == second.backendID, case .exited(let c) = event.kind { secondCode = c; break }
        }
        #expect(secondCode == 5)
        for spec in [first, second] { try await runtime.remove(spec.backendID) }
        await relay.close()
    }

    @Test func anotherDronesBackendsAreInvisible() async throws {
        let mine = try await DockerTestSetup.harness()
        let theirs = try await DockerTestSetup.harness()
        let spec = try mine.spec()
        _ = try await mine.runtime.start(spec)
        #expect(try await theirs.runtime.list().allSatisfy { $0.backendID != spec.backendID })
        #expect(try await theirs.runtime.status(of: spec.backendID) == .unknown)
        // Nor can the other drone stop, remove or read it.
        try await theirs.runtime.stop(spec.backendID, grace: .seconds(1))
        try await theirs.runtime.remove(spec.backendID)
        #expect(try await mine.runtime.status(of: spec.backendID).isRunning)
        await #expect(throws: RuntimeError.self) { try await theirs.runtime.stats(of: spec.backendID) }
        try await mine.runtime.stop(spec.backendID, grace: .seconds(2))
        try await mine.runtime.remove(spec.backendID)
    }
}

struct DockerRuntimeUnitTests {
    @Test func staleConnectionsAreRetriedOnlyWhenSafe() {
        #expect(DockerEngineClient.isStaleConnection(ChannelError.ioOnClosedChannel, method: .POST))
        #expect(DockerEngineClient.isStaleConnection(HTTPClientError.remoteConnectionClosed, method: .GET))
        #expect(!DockerEngineClient.isStaleConnection(HTTPClientError.remoteConnectionClosed, method: .POST))
        #expect(DockerEngineClient.isStaleConnection(IOError(errnoCode: ECONNRESET, reason: "read"), method: .POST))
        #expect(!DockerEngineClient.isStaleConnection(IOError(errnoCode: ECONNREFUSED, reason: "connect"), method: .GET))
        #expect(!DockerEngineClient.isStaleConnection(HTTPClientError.readTimeout, method: .GET))
    }

    @Test func imageReferences() throws {
        #expect(try DockerImageReference("plane-test-server").description == "plane-test-server:latest")
        let withPort = try DockerImageReference("127.0.0.1:5000/app/x")
        #expect(withPort.repository == "127.0.0.1:5000/app/x" && withPort.tag == "latest" && withPort.registry == "127.0.0.1:5000")
        let digest = try DockerImageReference("ghcr.io/o/r@sha256:abc")
        #expect(digest.digest == "sha256:abc" && digest.tag == nil && digest.registry == "ghcr.io")
        #expect(try DockerImageReference("ubuntu:22.04").registry == "https://index.docker.io/v1/")
        #expect(throws: RuntimeError.self) { try DockerImageReference("") }
        #expect(throws: RuntimeError.self) { try DockerImageReference("bad ref") }
        #expect(throws: RuntimeError.self) { try DockerImageReference("x:") }
    }

    @Test func logDemultiplexingAcrossChunks() {
        func frame(_ stream: UInt8, _ text: String) -> [UInt8] {
            let b = Array(text.utf8)
            return [stream, 0, 0, 0, UInt8(b.count >> 24), UInt8(b.count >> 16 & 0xFF), UInt8(b.count >> 8 & 0xFF), UInt8(b.count & 0xFF)] + b
        }
        let bytes = frame(1, "hello\nwor") + frame(2, "oops\n") + frame(1, "ld\nlast")
        var demux = DockerLogDemultiplexer()
        var lines: [LogLine] = []
        for byte in bytes { lines += demux.feed([byte]) }
        lines += demux.finish()
        #expect(lines == [LogLine(stream: .stdout, text: "hello"), LogLine(stream: .stderr, text: "oops"), LogLine(stream: .stdout, text: "world"), LogLine(stream: .stdout, text: "last")])
    }

    @Test func logTimestampsAreStrippedAndStrictlyIncreasing() throws {
        func frame(_ stream: UInt8, _ text: String) -> [UInt8] {
            let b = Array(text.utf8)
            return [stream, 0, 0, 0, UInt8(b.count >> 24), UInt8(b.count >> 16 & 0xFF), UInt8(b.count >> 8 & 0xFF), UInt8(b.count & 0xFF)] + b
        }
        // Docker stamps each entry; a line longer than its 16 KiB buffer comes as two entries.
        let bytes = frame(1, "2026-12-03T05:00:00.000000100Z first\n")
            + frame(2, "2026-12-03T05:00:00.000000100Z same time\n")
            + frame(1, "2026-12-03T05:00:00.000000050Z earlier\n")
            + frame(1, "2026-12-03T05:00:01.000000000Z long ")
            + frame(1, "2026-12-03T05:00:01.500000000Z line\n")
            + frame(1, "2026-12-03T05:00:02.000000000Z unfinished")
        func read(_ chunkSize: Int) -> [LogLine] {
            var demux = DockerLogDemultiplexer(timestamps: true)
            var lines: [LogLine] = []
            for start in stride(from: 0, to: bytes.count, by: chunkSize) { lines += demux.feed(bytes[start..<min(start + chunkSize, bytes.count)]) }
            return lines + demux.finish()
        }
        let base: Int64 = try Timestamp(rfc3339: "2026-12-03T05:00:00Z").nanosecondsSinceEpoch
        let lines = read(1)
        #expect(lines.map(\.text) == ["first", "same time", "earlier", "long line", "unfinished"])
        #expect(lines.map(\.stream) == [.stdout, .stderr, .stdout, .stdout, .stdout])
        #expect(lines.map { $0.time?.nanosecondsSinceEpoch } == [base + 100, base + 101, base + 102, base + 1_000_000_000, base + 2_000_000_000])
        // The same times on every read, however the body is cut.
        #expect(read(7) == lines && read(bytes.count) == lines)
        // Without timestamps asked for, the text is left alone.
        var plain = DockerLogDemultiplexer()
        #expect(plain.feed(frame(1, "2026-12-03T05:00:00Z kept\n")) == [LogLine(stream: .stdout, text: "2026-12-03T05:00:00Z kept")])
    }

    /// A backend's output is read as it arrives: a frame whose header announces 4 GiB is
    /// never held whole, and output without newlines comes out in lines of at most
    /// `LogLine.maximumLength` (the demultiplexer held a line until its newline, so one
    /// `yes | tr -d '\n'` could fill the drone's memory).
    @Test func outputWithoutNewlinesIsCutAndHugeFramesStream() {
        var demux = DockerLogDemultiplexer(timestamps: true)
        var lines = demux.feed([1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF] + Array("2026-12-03T05:00:00Z ".utf8))
        let chunk = [UInt8](repeating: UInt8(ascii: "y"), count: 10_000)
        for _ in 0..<100 { lines += demux.feed(chunk) }
        #expect(lines.count == 1_000_000 / LogLine.maximumLength)
        #expect(lines.allSatisfy { $0.text.utf8.count == LogLine.maximumLength && $0.stream == .stdout && $0.time != nil })
        // A line in the same frame ends as usual.
        lines = demux.feed(Array("tail\nnext\n".utf8))
        #expect(lines.map(\.text).last == "next")
        var splitter = LineSplitter()
        #expect(splitter.feed([UInt8](repeating: 0x61, count: LineSplitter.maximumRecordLength + 10) + Array("\n{}\n".utf8)) == [Array("{}".utf8)])
    }

    @Test func statsFollowTheSpec() throws {
        let v1 = try JSONParser.parse(#"{"cpu_stats":{"cpu_usage":{"total_usage":300},"system_cpu_usage":2000},"precpu_stats":{"cpu_usage":{"total_usage":100},"system_cpu_usage":1000},"memory_stats":{"usage":1000,"limit":4000,"stats":{"cache":200}}}"#)
        let sample = try DockerStatsCalculator.sample(from: v1)
        #expect(sample.cpuPercent == 20)
        #expect(sample.memoryBytes == 800 && sample.memoryLimitBytes == 4000 && sample.memoryPercent == 20)
        let v2 = try JSONParser.parse(#"{"cpu_stats":{"cpu_usage":{"total_usage":5}},"memory_stats":{"usage":500,"limit":1000,"stats":{"inactive_file":100}}}"#)
        let s2 = try DockerStatsCalculator.sample(from: v2)
        #expect(s2.cpuPercent == 0 && s2.memoryBytes == 400)
        // Numbers beyond what the fields hold are clamped, not trapped on (a Double of 1e30
        // made UInt64's conversion trap).
        let huge = try JSONParser.parse(#"{"cpu_stats":{"cpu_usage":{"total_usage":1e400},"system_cpu_usage":1},"memory_stats":{"usage":1e30,"limit":-5,"stats":{"cache":-1e300}}}"#)
        let s3 = try DockerStatsCalculator.sample(from: huge)
        #expect(s3.memoryBytes == UInt64.max && s3.memoryLimitBytes == 0 && s3.cpuPercent == 0)
    }

    @Test func eventsParse() throws {
        let die = try #require(JSONParser.parse(#"{"status":"die","id":"abc","Actor":{"Attributes":{"exitCode":"3","name":"plane-b1"}},"timeNano":1700000000123456789}"#).objectValue)
        #expect(DockerEventHub.runtimeEvent(die) == RuntimeEvent(backendID: "b1", kind: .exited(code: 3), time: Timestamp(secondsSinceEpoch: 1_700_000_000, nanoseconds: 123_456_789)))
        let other = try #require(JSONParser.parse(#"{"status":"die","Actor":{"Attributes":{"name":"unrelated"}}}"#).objectValue)
        #expect(DockerEventHub.runtimeEvent(other) == nil)
    }

    @Test func endpoints() throws {
        #expect(try DockerEngineClient(endpoint: "/var/run/docker.sock").baseURL == "http+unix://%2Fvar%2Frun%2Fdocker%2Esock")
        #expect(try DockerEngineClient(endpoint: "http://127.0.0.1:2375/").baseURL == "http://127.0.0.1:2375")
        #expect(throws: RuntimeError.self) { try DockerEngineClient(endpoint: "tcp://x") }
    }
}
