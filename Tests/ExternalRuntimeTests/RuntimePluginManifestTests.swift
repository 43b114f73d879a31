import ContainerRuntime
import ExternalRuntime
import Foundation
import PlaneTestSupport
import Testing

/// `runtime.toml`: what it must hold, and how the runtimes directory is scanned.
struct RuntimePluginManifestTests {
    @Test func aManifestIsReadAndItsExecutableFound() throws {
        let manifest = try RuntimePluginManifest.parse("""
            name = "sandbox"
            version = "1.2.0"
            description = "A sandbox"
            protocol_versions = [1, 2]
            executable = "/bin/true"
            args = ["--fast"]
            """, directory: "/plugins/sandbox")
        #expect(manifest.name == "sandbox" && manifest.version == "1.2.0" && manifest.protocolVersions == [1, 2] && manifest.arguments == ["--fast"])
        #expect(try manifest.resolvedExecutable() == "/bin/true")
        let missing = RuntimePluginManifest(name: "x", version: "1", description: "", protocolVersions: [1], executable: "no-such-plugin", directory: "/plugins/x")
        #expect(throws: RuntimeError.self) { try missing.resolvedExecutable() }
    }

    @Test func brokenManifestsAreNamedAndDuplicatesRefused() throws {
        for (text, problem) in [("name = \"a\"\nversion = \"1\"\nexecutable = \"x\"", "protocol_versions"),
                                ("name = \"a b\"\nversion = \"1\"\nexecutable = \"x\"\nprotocol_versions = [1]", "invalid"),
                                ("name = \"a\"\nversion = \"1\"\nexecutable = \"x\"\nprotocol_versions = [1]\ncolour = 1", "unknown key \"colour\""),
                                ("name = ", "not valid TOML")] {
            do throws(RuntimeError) {
                _ = try RuntimePluginManifest.parse(text, directory: "/plugins/a")
                Issue.record("\(text) must be refused")
            } catch {
                #expect(error.message.contains(problem) && error.message.contains("/plugins/a/runtime.toml"), "\(error.message)")
            }
        }
        let directory = try TestEnvironment.temporaryDirectory("runtimes")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for (folder, name) in [("one", "same"), ("two", "same"), ("three", "other"), ("broken", "")] {
            try FileManager.default.createDirectory(atPath: "\(directory)/\(folder)", withIntermediateDirectories: true)
            let text = name.isEmpty ? "nonsense" : "name = \"\(name)\"\nversion = \"1\"\nexecutable = \"x\"\nprotocol_versions = [1]\n"
            try text.write(toFile: "\(directory)/\(folder)/runtime.toml", atomically: true, encoding: .utf8)
        }
        let found = RuntimePluginDiscovery.scan(directory)
        #expect(found.plugins.map(\.name) == ["other"])
        #expect(found.problems.count == 2 && found.problems.contains { $0.contains("both named 'same'") })
    }
}
