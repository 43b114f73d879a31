import ContainerRuntime
import Foundation
import PlaneCore

/// The files of one backend (`{state_dir}/backends/{backend}/`).
struct ProcessBackendDirectory: Sendable, Hashable {
    let path: String

    /// What the backend is (`ProcessBackendRecord`), written before it starts.
    var recordFile: String { "\(path)/backend.json" }
    /// The shim's pid (its session and process group).
    var shimPIDFile: String { "\(path)/shim.pid" }
    /// The backend's pid (its own process group), written by the shim once it runs.
    var backendPIDFile: String { "\(path)/backend.pid" }
    /// Why the backend could not be executed (written by the launcher).
    var launchErrorFile: String { "\(path)/launch-error" }
    /// The backend's output (`BackendOutputLog` records).
    var outputLog: String { "\(path)/output.log" }
    /// How it ended (`BackendExitRecord`), written by the shim; outlives the plugin.
    var exitFile: String { "\(path)/exit.json" }
    /// The shim's own messages.
    var shimLog: String { "\(path)/shim.log" }

    func read<T: Decodable>(_ type: T.Type, _ file: String) -> T? {
        guard let data = FileManager.default.contents(atPath: file) else { return nil }
        return try? JSONDecoder().decode(type, from: data)
    }

    func pid(_ file: String) -> pid_t? {
        (try? String(contentsOfFile: file, encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }
}

/// What the plugin knows of a backend it started (`backend.json`).
struct ProcessBackendRecord: Codable, Sendable, Hashable {
    var backendID: String
    var executable: String
    var environment: [String: String]
    var address: String
    var port: UInt16
    /// RLIMIT_CPU in seconds, RLIMIT_NOFILE.
    var cpuTimeLimitSeconds: UInt64?
    var openFilesLimit: UInt64?
    var memoryLimitBytes: Int64?
    /// The cgroup directories made for it (empty: none could be made).
    var cgroupDirectories: [String]
    /// Where its cgroup is below the hierarchy roots (`/plane-process/{drone}/{backend}`).
    var cgroupPath: String

    enum CodingKeys: String, CodingKey {
        case backendID = "backend_id"
        case executable, environment, address, port
        case cpuTimeLimitSeconds = "cpu_time_limit_secs"
        case openFilesLimit = "nofile"
        case memoryLimitBytes = "memory_limit_bytes"
        case cgroupDirectories = "cgroup_directories"
        case cgroupPath = "cgroup_path"
    }
}
