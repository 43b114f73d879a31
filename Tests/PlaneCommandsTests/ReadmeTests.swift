import Foundation
import PlaneCore
import PlaneTestSupport
import Testing

/// The README's commands, read from the README and run exactly as written: CI runs its test
/// command, and its development command (`make dev`) serves the quickstart's three ways —
/// the CLI, `nats-py`, curl against the HTTP API — after which Ctrl-C leaves nothing behind.
@Suite(.serialized, .timeLimit(.minutes(15)))
struct ReadmeTests {
    static let root = PythonEnvironment.packageRoot

    @Test func ciRunsTheReadmesTestCommand() throws {
        let readme = try ReadmeDocument(path: Self.root + "/README.md")
        let commands = try readme.theTwoCommands()
        #expect(commands.count == 2, "\(commands)")
        let test = try #require(commands.last)
        // .ci/run ends by running exactly that command.
        let ci = try String(contentsOfFile: Self.root + "/.ci/run", encoding: .utf8)
        let lastCommand = ci.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.last { !$0.isEmpty && !$0.hasPrefix("#") && $0 != "fi" }
        #expect(lastCommand == test, ".ci/run ends with \(lastCommand ?? "nothing"), the README's test command is \(test)")
    }

    @Test func theQuickstartWorksAsWritten() async throws {
        let readme = try ReadmeDocument(path: Self.root + "/README.md")
        let dev = try #require(try readme.theTwoCommands().first)
        #expect(dev == "make dev")
        // The quickstart uses plane dev's default ports and state directory.
        for port in [4222, 8443, 9090] {
            try #require(TCPPortProbe.canBind(port: port, address: "127.0.0.1"), "port \(port) is in use; the README's commands need plane dev's default ports")
        }
        _ = try await DockerTestImage.shared.ensureLoaded()  // dockerd answers, so plane dev picks Docker
        // `swift test` holds the build directory's lock while the tests run; the Makefile
        // passes SWIFTPM_FLAGS to `swift build`, which must have nothing to rebuild here:
        // other suites run `plane` meanwhile, and one relinked under them cannot be started
        // (ETXTBSY; an OCI shim start failed so in CI). A plain `swift build` after the test
        // build recompiled a dependency and relinked `plane` in a fresh clone; with
        // `--build-tests` it builds what `swift test` built, so nothing.
        let environment = ["SWIFTPM_FLAGS": "--ignore-lock --build-tests", "TMPDIR": "/tmp/"]
        let plane = try TestExecutables.path("plane")
        let linkedBefore = Self.modificationTime(plane)
        let cluster = try ChildProcess("/bin/bash", arguments: ["-c", "cd \(Self.root) && \(dev)"], environment: environment)
        defer { kill(-cluster.pid, SIGKILL) }  // its whole process group, if the test ends early
        #expect(try await eventually(timeout: .seconds(600)) { cluster.output.contains("is ready") || !cluster.isRunning }, "\(cluster.output)")
        try #require(cluster.output.contains("Plane dev cluster 'plane.localhost' is ready (runtime: docker"), "\(cluster.output)")
        #expect(Self.modificationTime(plane) == linkedBefore, "make dev relinked \(plane) while other tests run it")
        let drone = try #require(cluster.output.firstMatch(of: /drone: ([a-z0-9.-]+)\)/)?.output.1, "\(cluster.output)")

        let cli = try await run(try readme.block("cli"), environment: environment)
        #expect(cli.status == 0, "\(cli.output)\n--- plane dev:\n\(cluster.output)")
        #expect(cli.output.contains("Hello World!") && cli.output.contains("\tReady\t") && cli.output.contains("plane-test-server: listening on"), "\(cli.output)")

        let natsPy = try await run(try readme.block("nats-py"), environment: environment)
        #expect(natsPy.status == 0 && natsPy.output.contains("backend ") && natsPy.output.hasSuffix("Ready\n"), "\(natsPy.output)")

        let httpAPI = try await run(try readme.block("http-api"), environment: environment)
        #expect(httpAPI.status == 0 && httpAPI.output.contains("\"spawned\":true") && httpAPI.output.contains("\"state\":"), "\(httpAPI.output)")

        // Ctrl-C: the terminal signals the whole foreground process group.
        kill(-cluster.pid, SIGINT)
        #expect(await cluster.waitForExit(timeout: .seconds(120)) != nil, "\(cluster.output)")
        #expect(try await eventually(timeout: .seconds(30)) { kill(-cluster.pid, 0) != 0 }, "processes of make dev still run")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: "/proc").filter { Int($0) != nil }.filter { pid in
            (BoundedFile.generatedText("/proc/\(pid)/cmdline") ?? "").contains("/tmp/plane-dev/")
        }
        #expect(leftovers.isEmpty, "processes still running: \(leftovers)")
        let containers = try await SystemProgram("docker", debianPackage: "docker.io").run(["ps", "-a", "-q", "--filter", "label=dev.plane.drone=\(drone)"])
        #expect(containers.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "containers left: \(containers)")
        let mounts = String(decoding: try BoundedFile.readGenerated("/proc/mounts"), as: UTF8.self)
        #expect(!mounts.contains("/tmp/plane-dev/"), "mounts left under /tmp/plane-dev/")
    }

    /// Runs a README block with bash (stopping at the first failing command) in the
    /// package's root; a block still running after five minutes is killed.
    /// Nanoseconds since the epoch.
    static func modificationTime(_ path: String) -> Int? {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mtim.tv_sec * 1_000_000_000 + info.st_mtim.tv_nsec : nil
    }

    func run(_ block: String, environment: [String: String]) async throws -> (status: Int32, output: String) {
        let shell = try ChildProcess("/bin/bash", arguments: ["-c", "set -euo pipefail; cd \(Self.root)\n" + block], environment: environment)
        guard let status = await shell.waitForExit(timeout: .seconds(300)) else {
            kill(-shell.pid, SIGKILL)
            return (-1, shell.output + "\n(still running after 300 s; killed)")
        }
        return (status, shell.output)
    }
}

/// The parts of README.md the tests run.
struct ReadmeDocument {
    let lines: [Substring]

    init(path: String) throws {
        lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
    }

    /// The code block right after the `<!-- readme-test: {name} -->` marker.
    func block(_ name: String) throws -> String {
        guard let marker = lines.firstIndex(where: { $0.trimmingCharacters(in: .whitespaces) == "<!-- readme-test: \(name) -->" }) else {
            throw TestSupportError("README.md has no <!-- readme-test: \(name) --> marker")
        }
        return try fence(after: marker).joined(separator: "\n")
    }

    /// The commands of the first code block under "## The two commands", comments removed.
    func theTwoCommands() throws -> [String] {
        guard let heading = lines.firstIndex(where: { $0 == "## The two commands" }) else { throw TestSupportError("README.md has no '## The two commands' section") }
        return try fence(after: heading).map { line in
            String(line.split(separator: "#", maxSplits: 1).first ?? "").trimmingCharacters(in: .whitespaces)
        }.filter { !$0.isEmpty }
    }

    /// The lines inside the first fenced block after line `index`.
    func fence(after index: Int) throws -> [Substring] {
        guard let open = lines[(index + 1)...].firstIndex(where: { $0.hasPrefix("```") }),
              let close = lines[(open + 1)...].firstIndex(where: { $0.hasPrefix("```") }) else {
            throw TestSupportError("README.md: no code block after line \(index + 1)")
        }
        return Array(lines[(open + 1)..<close])
    }
}
