import Foundation
import PlaneTestSupport

/// `plane-runtime-driver` running in a network namespace (and mount namespace, with its own
/// `/run`) that this test makes with `unshare`: what the OCI runtime does to the network
/// there stays there and ends with it. Commands go as JSON lines (see the driver's header).
final class RuntimeDriverProcess: @unchecked Sendable {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    let logPath: String
    private var pending = Data()
    private let lock = NSLock()

    init() throws {
        logPath = try TestEnvironment.temporaryDirectory("runtime-driver") + "/driver.log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        process.arguments = ["--net", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                             #"mount -t tmpfs -o mode=755 tmpfs /run && ip link set lo up && exec "$0""#,
                             try TestExecutables.path("plane-runtime-driver")]
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle(forWritingAtPath: logPath)
        try process.run()
    }

    /// Sends a command and returns the driver's answer; throws its error.
    @discardableResult
    func call(_ command: [String: Any]) async throws -> [String: Any] {
        let line = try JSONSerialization.data(withJSONObject: command) + Data("\n".utf8)
        let reply: Data = try await withCheckedThrowingContinuation { continuation in
            DispatchQueue(label: "plane.runtime-driver").async {
                self.lock.lock()
                defer { self.lock.unlock() }
                self.input.fileHandleForWriting.write(line)
                while true {
                    if let newline = self.pending.firstIndex(of: 0x0A) {
                        let reply = self.pending[self.pending.startIndex..<newline]
                        self.pending = Data(self.pending[(newline + 1)...])
                        continuation.resume(returning: Data(reply))
                        return
                    }
                    let chunk = self.output.fileHandleForReading.availableData
                    if chunk.isEmpty {
                        continuation.resume(throwing: Failure(description: "the driver ended: \(self.log)"))
                        return
                    }
                    self.pending += chunk
                }
            }
        }
        guard let answer = try JSONSerialization.jsonObject(with: reply) as? [String: Any] else {
            throw Failure(description: "not a JSON object: \(String(decoding: reply, as: UTF8.self))")
        }
        guard answer["ok"] as? Bool == true else {
            throw Failure(description: "\(command["command"] ?? "?") failed: \(answer["error"] ?? "?")")
        }
        return answer
    }

    /// Runs a program in the driver's namespaces; its exit status and output.
    func run(_ argv: String...) async throws -> (status: Int, output: String) { try await run(argv) }

    func run(_ argv: [String]) async throws -> (status: Int, output: String) {
        let answer = try await call(["command": "run", "argv": argv])
        return (answer["status"] as? Int ?? -1, answer["output"] as? String ?? "")
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Closes its input (it exits) and makes sure it ended, by PID.
    func end() {
        try? input.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning, Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}
