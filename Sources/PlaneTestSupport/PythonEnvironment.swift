import Foundation
import Synchronization

/// A Python virtualenv with the peers the proxy tests talk to (`websockets`,
/// `python-socketio` with `aiohttp`), in `.build/plane-test-venv`. `make test` creates it
/// (scripts/test-python.sh); a test that finds it missing creates it itself (pip from PyPI).
public enum PythonEnvironment {
    public static let packages = ["websockets", "python-socketio", "aiohttp"]
    /// The one preparation of the venv that every test awaits (checked or created once
    /// per test process; a failure is kept, so every test that needs the venv reports it).
    private static let preparation = Mutex<Task<String, any Error>?>(nil)

    /// The package's root directory (this file is `Sources/PlaneTestSupport/...`).
    public static var packageRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    public static var directory: String { packageRoot + "/.build/plane-test-venv" }

    /// The venv's `python`, with the packages importable.
    public static func python() async throws -> String {
        let task = preparation.withLock { task in
            if let task { return task }
            let started = Task { try await prepare() }
            task = started
            return started
        }
        return try await task.value
    }

    private static func prepare() async throws -> String {
        let python = directory + "/bin/python"
        let check = "import websockets, socketio, aiohttp"
        if FileManager.default.isExecutableFile(atPath: python), (try? await SystemProgram.run(executable: python, ["-c", check]))?.status == 0 {
            return python
        }
        let system = try SystemProgram("python3", debianPackage: "python3-venv").path()
        var (status, output) = try await SystemProgram.run(executable: system, ["-m", "venv", directory])
        guard status == 0 else { throw TestSupportError("python3 -m venv \(directory) failed (apt-get install -y python3-venv): \(output)") }
        (status, output) = try await SystemProgram.run(executable: python, ["-m", "pip", "install", "-q"] + packages)
        guard status == 0 else { throw TestSupportError("pip install \(packages.joined(separator: " ")) failed (PyPI reachable?): \(output)") }
        return python
    }
}
