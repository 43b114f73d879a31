import Foundation

/// The reference path: `runc run -d` of a bundle prepared by hand (the image's layers
/// unpacked into `rootfs/`; `config.json` from `runc spec` with the image's command and
/// host networking, or the one the OCI runtime wrote). Only the port (and the cgroup, when
/// the configuration names one) changes between runs.
struct HandMadeBundleBench {
    let binary: String
    let bundle: String
    let root: String

    func run(_ latency: StartLatency) async throws -> [Double] {
        let configPath = bundle + "/config.json"
        let template = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath))) as! [String: Any]
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        return try await latency.measure(start: { run, port in
            var config = template
            var process = config["process"] as! [String: Any]
            let env = (process["env"] as? [String] ?? []).filter { !$0.hasPrefix("PORT=") }
            process["env"] = env + ["PORT=\(port)"]
            config["process"] = process
            if var linux = config["linux"] as? [String: Any], linux["cgroupsPath"] != nil {
                linux["cgroupsPath"] = "/plane-bench/\(run)"
                config["linux"] = linux
            }
            // Written before the clock matters as little as possible: a small file, as a
            // hand-made bundle would have it ready.
            try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))
            try Self.execute(binary, ["--root", root, "run", "-d", "--bundle", bundle, "plane-bench-\(run)"])
            return nil
        }, stop: { run in
            try Self.execute(binary, ["--root", root, "kill", "plane-bench-\(run)", "KILL"])
            for _ in 0..<500 {
                if (try? Self.execute(binary, ["--root", root, "delete", "plane-bench-\(run)"])) != nil { return }
                try await Task.sleep(for: .milliseconds(10))
            }
            try Self.execute(binary, ["--root", root, "delete", "--force", "plane-bench-\(run)"])
        })
    }

    static func execute(_ binary: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw BenchError("\(binary) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus)")
        }
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
