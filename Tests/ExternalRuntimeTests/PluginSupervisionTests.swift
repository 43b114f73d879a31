import ContainerRuntime
import ExternalRuntime
import Foundation
import PlaneCore
import PlaneTestSupport
import RuntimeConformance
import Testing

/// The drone's side of a plugin's life: restarts after a crash with its backends found
/// again, refusal of a plugin without a common protocol version, timeouts for a hung one,
/// and malformed frames that cost a restart at most.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct PluginSupervisionTests {
    /// A plugin (`fake_plugin.py {mode}`) in a runtimes directory of its own.
    func fakePlugin(_ mode: String, versions: String = "[1]") throws -> String {
        let directory = try TestEnvironment.temporaryDirectory("fake-plugin") + "/fake"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let python = try SystemProgram("python3", debianPackage: "python3").path()
        try """
            name = "fake"
            version = "0.0.1"
            protocol_versions = \(versions)
            executable = "\(python)"
            args = ["\(ProcessPluginSetup.repository)/Tests/ExternalRuntimeTests/plugins/fake_plugin.py", "\(mode)"]
            """.write(toFile: directory + "/runtime.toml", atomically: true, encoding: .utf8)
        return directory
    }

    @Test func aKilledPluginIsRestartedAndFindsItsBackendsAgain() async throws {
        var configuration = ExternalRuntimeConfiguration()
        configuration.restartBackoff = .milliseconds(100)
        try await ProcessPluginSetup.withPlugin(configuration: configuration) { runtime, h in
            let specs = try (0..<3).map { _ in try h.spec() }
            for spec in specs {
                let handle = try await runtime.start(spec)
                _ = try await HTTPProbe(host: "127.0.0.1", port: Int(try #require(handle.address).port)).waitUntilAnswering("/")
            }
            let events = runtime.events()
            let follower = Task {
                var lines: [String] = []
                for try await line in runtime.logs(of: specs[0].backendID, follow: true) {
                    lines.append(line.text)
                    if line.text.contains("/after-restart") { break }
                }
                return lines
            }
            let before = try #require(runtime.pluginProcessID)
            kill(before, SIGKILL)
            #expect(try await eventually(timeout: .seconds(30)) { runtime.restarts == 1 && runtime.pluginProcessID != nil && runtime.pluginProcessID != before })
            // The backends never stopped; the new plugin process finds all three.
            for spec in specs {
                #expect(try await runtime.status(of: spec.backendID) == .running(address: BackendAddress(host: "127.0.0.1", port: spec.port)))
                #expect(try await HTTPProbe(host: "127.0.0.1", port: Int(spec.port)).get("/").body == "Hello World!")
            }
            #expect(Set(try await runtime.list().map(\.backendID)) == Set(specs.map(\.backendID)))
            // The log stream that followed a backend across the restart goes on.
            _ = try await HTTPProbe(host: "127.0.0.1", port: Int(specs[0].port)).get("/after-restart")
            let lines = try await follower.value
            #expect(lines.filter { $0.contains("listening on") }.count == 1, "no line twice: \(lines)")
            // The event stream resumed: an exit after the restart arrives.
            _ = try? await HTTPProbe(host: "127.0.0.1", port: Int(specs[1].port)).get("/exit/7")
            var exited: Int32?
            for await event in events where event.backendID == specs[1].backendID {
                if case .exited(let code) = event.kind { exited = code; break }
            }
            #expect(exited == 7)
        }
    }

    @Test func aPluginWithoutACommonProtocolVersionIsRefused() async throws {
        let state = try TestEnvironment.temporaryDirectory("fake-drone")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let context = RuntimeContext(droneID: .random(), stateDirectory: state, logger: .init(label: "test"))
        // Its manifest says so: refused before it is started.
        let newer = try RuntimePluginManifest.load(directory: try fakePlugin("old-version", versions: "[2, 3]"))
        do throws(RuntimeError) {
            _ = try await ExternalRuntime.make(manifest: newer, context: context)
            Issue.record("a plugin speaking only versions 2 and 3 must be refused")
        } catch {
            #expect(error.code == .unsupported && error.message.contains("[2, 3]") && error.message.contains("[1]"), "\(error.message)")
        }
        // Its manifest claims version 1, its hello answer says otherwise.
        let claiming = try RuntimePluginManifest.load(directory: try fakePlugin("old-version"))
        do throws(RuntimeError) {
            _ = try await ExternalRuntime.make(manifest: claiming, context: context)
            Issue.record("a plugin refusing the drone's versions must be refused")
        } catch {
            #expect(error.code == .unsupported && error.message.contains("[2]") && error.message.contains("[1]"), "\(error.message)")
        }
        #expect(!FileManager.default.fileExists(atPath: state + "/runtimes/fake/plugin.sock"), "nothing is left listening")
    }

    @Test func aLargeLogIsMovedAsideAndOnlyItsEndIsRead() async throws {
        let state = try TestEnvironment.temporaryDirectory("fake-drone")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let directory = state + "/runtimes/fake"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // What earlier runs left: a log larger than the drone keeps (sparse, 17 MiB).
        let earlier = open(directory + "/plugin.log", O_WRONLY | O_CREAT, 0o600)
        try #require(earlier >= 0)
        #expect(ftruncate(earlier, 17 << 20) == 0)
        close(earlier)
        let context = RuntimeContext(droneID: .random(), stateDirectory: state, logger: .init(label: "test"))
        let manifest = try RuntimePluginManifest.load(directory: try fakePlugin("chatty-exit"))
        do throws(RuntimeError) {
            _ = try await ExternalRuntime.make(manifest: manifest, context: context)
            Issue.record("a plugin that exits before it connects must fail the start")
        } catch {
            #expect(error.message.contains("before it connected") && error.message.contains("the last words"), "\(error.message)")
            #expect(error.message.contains("line 1999 ") && !error.message.contains("line 1990 "), "the last five lines only: \(error.message)")
        }
        // The earlier log was moved aside whole; the new one holds this run's output only.
        let moved = try FileManager.default.attributesOfItem(atPath: directory + "/plugin.log.1")[.size] as? Int
        let current = try FileManager.default.attributesOfItem(atPath: directory + "/plugin.log")[.size] as? Int
        #expect(moved == 17 << 20)
        #expect((current ?? 0) > 16_384 && (current ?? 0) < 1 << 20)
    }

    @Test func aHungPluginTimesOutAndIsRestarted() async throws {
        var configuration = ExternalRuntimeConfiguration()
        configuration.callTimeout = .seconds(1)
        configuration.restartBackoff = .milliseconds(100)
        try await ProcessPluginSetup.withPlugin(manifestDirectory: try fakePlugin("hang"), configuration: configuration) { runtime, _ async throws in
            let backend = BackendID.random()
            let started = ContinuousClock.now
            for _ in 0..<3 {
                do throws(RuntimeError) {
                    _ = try await runtime.status(of: backend)
                    Issue.record("a hung plugin cannot answer")
                } catch {
                    #expect(error.code == .timeout && error.message.contains("did not answer status"), "\(error.message)")
                }
            }
            #expect(ContinuousClock.now - started < .seconds(10))
            // Three calls in a row unanswered: it counts as hung and is restarted.
            #expect(try await eventually(timeout: .seconds(20)) { runtime.restarts >= 1 })
        }
    }

    @Test func malformedFramesDoNotStopTheDrone() async throws {
        var configuration = ExternalRuntimeConfiguration()
        configuration.callTimeout = .seconds(2)
        configuration.restartBackoff = .milliseconds(100)
        try await ProcessPluginSetup.withPlugin(manifestDirectory: try fakePlugin("garbage"), configuration: configuration) { runtime, _ async throws in
            // A frame that is not JSON is skipped; the answer after it counts.
            #expect(try await runtime.status(of: .random()) == .unknown)
            try await runtime.stop(.random(), grace: .seconds(1))
            // A frame longer than the protocol allows ends the connection: the call fails
            // and the plugin is restarted, then answers again.
            do throws(RuntimeError) {
                _ = try await runtime.list()
                Issue.record("an oversized frame cannot be an answer")
            } catch {
                #expect(error.code == .unavailable || error.code == .timeout, "\(error)")
            }
            #expect(try await eventually(timeout: .seconds(20)) { runtime.restarts >= 1 })
            #expect(try await runtime.status(of: .random()) == .unknown)
        }
    }

    /// Log lines without times (the protocol allows them) all arrive.
    @Test func logLinesWithoutTimesAreAllDelivered() async throws {
        try await ProcessPluginSetup.withPlugin(manifestDirectory: try fakePlugin("timeless")) { runtime, _ async throws in
            var lines: [String] = []
            for try await line in runtime.logs(of: .random(), follow: false) { lines.append(line.text) }
            #expect(lines == ["one", "two", "three"])
        }
    }
}
